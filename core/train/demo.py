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
