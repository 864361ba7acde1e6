"""Rerun cost of one user's interaction, without load: N threshold moves on Performance, N penalty edits on Penalties
and N reader answers on the Reader study's grading screen, each rerun the way the browser reruns it (the widget's
fragment alone when it sits in one, else the whole app; tests/_rerun.py), on the seeded workspace (tests/seed.py).
Prints median and p95 seconds per kind, the same pages' full rerun for scale, and the cost of the sign-in check a
fragment makes before it stores anything (dashboard.access_ui.live_actor -> core.store.access.resume_session).

    python -m benchmarks.bench_rerun [--n 20] [--workspace DIR]

Before/after: run it in a checkout of the old code (git worktree add /tmp/old HEAD) on the same machine; the
figures depend on the machine and on what else runs on it (the script prints the load average)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def _summary(name: str, seconds: list[float]) -> str:
    return (f"{name}: median {np.median(seconds):.3f} s, p95 {np.percentile(seconds, 95):.3f} s "
            f"over {len(seconds)}")


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="interactions of each kind")
    parser.add_argument("--workspace", type=Path, default=None, help="seed (or reuse) the workspace here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workspace or Path(scratch) / "workspace"
        from tests.seed import seed_workspace

        seeded = seed_workspace(root)
        from tests._rerun import BrowserReruns
        from tests.apptest import signed_in_app

        os.environ["CORE_WORKSPACE"] = seeded["root"]  # after tests.conftest, which points it elsewhere
        results: dict[str, list[float]] = {}
        rng = np.random.default_rng(0)

        def page(path: str) -> BrowserReruns:
            at = signed_in_app(run_id=seeded["run_id"], test_set_id=seeded["test_set_id"])
            at.run()
            at.switch_page(path)
            browser = BrowserReruns(at)
            browser.full_run()
            if at.exception:
                raise SystemExit(f"{path} failed: {[e.value for e in at.exception]}")
            return browser

        performance = page("../pages/performance.py")
        results["performance, full rerun"] = [_timed(performance.full_run) for _ in range(3)]
        for threshold in rng.uniform(0.05, 0.95, args.n):
            slider = performance.at.slider(key="perf_threshold")
            slider.set_value(float(round(threshold, 3)))
            results.setdefault("threshold move", []).append(_timed(lambda: performance.interact(slider)))
        fragment = performance.fragment_of(performance.at.slider(key="perf_threshold"))

        penalties = page("../pages/penalties.py")
        results["penalties, full rerun"] = [_timed(penalties.full_run) for _ in range(3)]
        editor = penalties.at.data_editor[0]
        classes = list(editor.value.columns)
        for n in range(args.n):
            row, col = int(rng.integers(len(classes))), int(rng.integers(len(classes) - 1))
            col += col >= row  # off the diagonal
            penalties.at.session_state[editor.key] = {"edited_rows": {row: {classes[col]: float(1 + n % 9)}},
                                                      "added_rows": [], "deleted_rows": []}
            results.setdefault("penalty edit", []).append(_timed(lambda: penalties.interact(editor)))
        edit_fragment = penalties.fragment_of(editor)

        # A reader grading: a real sign-in (token), a study over the whole test set, an answer per interaction.
        from core.data.ingest import load_registered
        from core.readers import create_study, join_study
        from core.store import Workspace
        from core.store.access import READER, SHELL, Actor, resume_session, set_user, start_session
        from dashboard import state

        ws = Workspace.open(seeded["root"])
        test_set = load_registered(ws, seeded["test_set_id"])
        study_id = create_study(ws, seeded["test_set_id"], test_set, test_set.task, name=f"bench rerun {os.getpid()}")
        reader = f"bench-reader-{os.getpid()}"
        set_user(ws, reader, READER, "bench-reader-pw", actor=SHELL)
        join_study(ws, study_id, reader)
        token = start_session(ws, Actor(reader, READER))
        at = signed_in_app(READER, user=reader, **{state.SESSION_TOKEN: token, state.SESSION_WORKSPACE: str(ws.root)})
        grading = BrowserReruns(at)
        results["reader study, full rerun"] = [_timed(grading.full_run) for _ in range(3)]
        answer_fragment = grading.fragment_of(grading.at.button(key="rs_class_0"))
        for n in range(min(args.n, len(test_set.table) - 1)):
            button = grading.at.button(key=f"rs_class_{n % len(test_set.task.classes)}")
            button.click()
            results.setdefault("reader answer", []).append(_timed(lambda: grading.interact(button)))
        results["sign-in check (resume_session)"] = [_timed(lambda: resume_session(ws, token)) for _ in range(200)]

    print(f"machine: {os.cpu_count()} CPU cores, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"threshold slider in a fragment: {'yes' if fragment else 'no (whole app reruns)'}; "
          f"penalty editor in a fragment: {'yes' if edit_fragment else 'no (whole app reruns)'}; "
          f"reader's answer buttons in a fragment: {'yes' if answer_fragment else 'no (whole app reruns)'}")
    for name, seconds in results.items():
        print(_summary(name, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
