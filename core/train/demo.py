"""The default 'Try the demo' run: frozen EfficientNet-Lite0 (offline ImageNet weights), cached features, demo data."""

from __future__ import annotations

from core.data.demo import DEMO_TASK, demo_status
from core.data.tasks import get_task
from core.errors import InputError
from core.store import Workspace
from core.train.config import RunConfig

DEMO_BACKBONE = "tf_efficientnet_lite0"
# The synthetic demo has one "site": acquisition views would only triple its training time (a minute on 2 cores).
DEMO_VIEWS = 0
# The real demo's MedMNIST images are 28 px: features at 112 px score as well as at 224 px on PneumoniaMNIST
# (held-out AUC 0.967 vs 0.963) for a quarter of the extraction time.
REAL_DEMO_SIZE = 112
DEMO_RUN_NAME = "Demo: EfficientNet-Lite0, cached features (synthetic OCT)"


def demo_run_config(ws: Workspace) -> dict:
    """A launch_run-ready config for the registered built-in demo dataset (the paper's features method).

    Raises InputError when the demo is not registered yet (core.data.demo.ensure_demo does that)."""
    status = demo_status(ws)
    if not status.get("registered"):
        raise InputError(f"the built-in demo is not registered in workspace {ws.root}; generate it first "
                         "(home page, or core.data.demo.ensure_demo)")
    cfg = RunConfig(data=str(ws.demo_dir / "train"), dataset_id=status.get("dataset_id"),
                    task=get_task(DEMO_TASK).to_dict(), name=DEMO_RUN_NAME, backbone=DEMO_BACKBONE,
                    pretrained=True, mode="features", device="auto", views=DEMO_VIEWS, extra={"demo": True})
    return cfg.to_dict()


def real_demo_run_config(ws: Workspace, backbone: str = DEMO_BACKBONE) -> dict:
    """A launch_run-ready config for the real demo (core.data.demo.build_real_demo): the same recipe as the
    synthetic demo's (frozen features, logistic head fitted exactly, no acquisition views), on the real images.

    Raises InputError when no real demo was built."""
    from core.data.demo import real_demo_status
    from core.data.ingest import registered_task

    ids = real_demo_status(ws)
    if not ids:
        raise InputError("no real demo is built in this workspace; build one first (python -m core demo-data "
                         "--real --npz FILE.npz, or the Home page)")
    record = ws.get_dataset(ids["dataset_id"])
    cfg = RunConfig(data=str(record["source"]), dataset_id=ids["dataset_id"],
                    task=registered_task(record).to_dict(),
                    name=f"Demo: EfficientNet-Lite0, cached features (real {ids.get('file', 'MedMNIST')} images)",
                    backbone=backbone, pretrained=True, mode="features", device="auto", views=DEMO_VIEWS,
                    image_size=REAL_DEMO_SIZE, extra={"demo": "real"})
    return cfg.to_dict()


def train_real_demo(ws: Workspace, actor=None, poll_s: float = 1.0) -> dict:
    """Train the real demo's model (real_demo_run_config) and wait for it: its registry row once it ended. The run
    goes through launch_run like any other (its own process, a row on the Train page)."""
    import time

    from core.store.access import SHELL
    from core.train.launcher import launch_run, reconcile_runs

    run_id = launch_run(real_demo_run_config(ws), ws, actor=actor or SHELL)
    while True:
        reconcile_runs(ws)
        run = ws.get_run(run_id) or {}
        if run.get("status") not in ("queued", "running"):
            return run
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """`python -m core.train.demo`: train the workspace's real demo and print its run id on the last line
    (`python -m core demo-data --real` calls it once the images are registered)."""
    import sys

    from core.store import Workspace

    started = __import__("time").time()
    try:
        run = train_real_demo(Workspace.open())
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if run.get("status") != "succeeded":
        print(f"error: the demo run {run.get('id')} ended {run.get('status')}: {run.get('error') or ''}",
              file=sys.stderr)
        return 1
    from core.train.scores import score_title

    print(f"trained in {__import__('time').time() - started:.0f} s: validation {score_title(run.get('best_metric_name'))} "
          f"{run.get('best_metric'):.3f}")
    print(run["id"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
