"""How fast the evaluation pages answer a threshold move or a penalty edit, at 1,000 and 100,000 predictions.

Builds two workspaces of synthetic predictions (oct-kermany, labelled synthetic), then with Streamlit's AppTest:
opens the Performance page (first run: parses the file, sorts the scores, computes the AUCs) and moves the
threshold slider several times; opens the Penalties page and edits a penalty cell several times. It also times
the core calls one Performance rerun makes. Prints the median rerun times and the 100,000 / 1,000 ratios
(after an untimed warm-up).

    .venv/bin/python benchmarks/bench_dashboard.py [--sizes 1000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.data.tasks import get_task  # noqa: E402
from core.infer import read_predictions  # noqa: E402
from core.infer.predictions import evaluation_arrays  # noqa: E402
from core.metrics import tier_confusion  # noqa: E402
from core.metrics.dashboard import (call_summary, calls_at_threshold, class_aucs, class_table,  # noqa: E402
                                    urgent_view, view_scores)
from core.metrics.penalty_effect import penalty_effect  # noqa: E402
from tests._evaluation_data import build_workspace  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")


def _app(root: str, ids: dict) -> AppTest:
    os.environ["CORE_WORKSPACE"] = root
    at = AppTest.from_file(APP, default_timeout=600)
    at.session_state["run_id"] = ids["run_ids"][0]
    at.session_state["test_set_id"] = ids["test_set_id"]
    at.session_state["threshold"] = 0.5
    at.run()
    return at


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_performance(root: str, ids: dict, repeats: int) -> tuple[float, float]:
    at = _app(root, ids)
    first = _timed(lambda: at.switch_page("../pages/performance.py").run())
    assert not at.exception, [e.value for e in at.exception]
    times = []
    for value in np.linspace(0.30, 0.70, repeats):
        slider = at.slider(key="perf_threshold")
        times.append(_timed(lambda: slider.set_value(round(float(value), 3)).run()))
        assert not at.exception, [e.value for e in at.exception]
    return first, statistics.median(times)


def bench_penalties(root: str, ids: dict, repeats: int) -> tuple[float, float]:
    at = _app(root, ids)
    first = _timed(lambda: at.switch_page("../pages/penalties.py").run())
    assert not at.exception, [e.value for e in at.exception]
    key = at.data_editor[0].key
    times = []
    for i in range(repeats):
        at.session_state[key] = {"edited_rows": {0: {"NORMAL": 4.0 + i + 1}}, "added_rows": [], "deleted_rows": []}
        times.append(_timed(at.run))
        assert not at.exception, [e.value for e in at.exception]
    return first, statistics.median(times)


def bench_core_calls(path: str, repeats: int) -> float:
    """The core work of one Performance rerun after a threshold move (inputs already cached)."""
    task = get_task("oct-kermany")
    frame, _ = read_predictions(path)
    arrays = evaluation_arrays(frame, task)
    view = urgent_view(task)
    scores = view_scores(arrays, view)
    aucs = class_aucs(arrays)

    def rerun(threshold: float) -> None:
        point = scores.at_threshold(threshold)
        point.metrics()
        calls = calls_at_threshold(arrays.probabilities, task.classes, view, threshold)
        summary = call_summary(arrays.truth, calls, task.classes, task.penalty(), arrays.patient_codes,
                               probabilities=arrays.probabilities)
        class_table(summary.confusion, aucs)
        tier_confusion(arrays.truth, calls, task)
        penalty_effect(arrays.truth, arrays.probabilities, task.penalty(), arrays.patient_codes)

    return statistics.median(_timed(lambda t=t: rerun(t)) for t in np.linspace(0.3, 0.7, repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        # Warm-up, untimed: the first figures of each kind import plotly's validators, which would otherwise be
        # charged to whichever size runs first.
        warm = str(Path(tmp) / "ws-warm-up")
        warm_ids = build_workspace(warm, n=200, seed=1)
        bench_performance(warm, warm_ids, 2)
        bench_penalties(warm, warm_ids, 2)
        for n in args.sizes:
            root = str(Path(tmp) / f"ws-{n}")
            ids = build_workspace(root, n=n, runs=[{"name": f"Synthetic model ({n:,} predictions)"}])
            perf_first, perf_rerun = bench_performance(root, ids, args.repeats)
            pen_first, pen_rerun = bench_penalties(root, ids, args.repeats)
            core = bench_core_calls(ids["paths"][0], args.repeats)
            results[n] = (perf_first, perf_rerun, pen_first, pen_rerun, core)
            print(f"{n:>9,} rows | performance: first run {perf_first:6.2f} s, rerun after threshold move "
                  f"{perf_rerun:5.3f} s | penalties: first run {pen_first:6.2f} s, rerun after cell edit "
                  f"{pen_rerun:5.3f} s | core calls per rerun {core * 1000:6.1f} ms", flush=True)
    if len(args.sizes) >= 2:
        small, large = min(args.sizes), max(args.sizes)
        ratio = [results[large][i] / results[small][i] for i in range(5)]
        print(f"ratio {large:,} / {small:,} rows ({large // small}x the data): performance rerun {ratio[1]:.2f}x, "
              f"penalties rerun {ratio[3]:.2f}x, core calls {ratio[4]:.2f}x "
              f"(first runs: {ratio[0]:.2f}x, {ratio[2]:.2f}x)")
    print("Reruns time AppTest's full page script (every figure and table redrawn), median of "
          f"{args.repeats}; the Penalties page opens after the Performance page has cached the metric inputs; "
          "predictions are synthetic.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
