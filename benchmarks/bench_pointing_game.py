"""Pointing game on the built-in demo: occlusion vs Grad-CAM maps of the default demo model, scored against the
demo's lesion boxes (lesions.csv), overall and per class, correct vs misclassified.

Builds (or reuses) a workspace with the default demo (synthetic OCT, 120 train / 40 test images per class at
256 px), trains the default demo run (frozen EfficientNet-Lite0, offline ImageNet weights, cached features) unless
one already succeeded there, predicts on the demo test split, then explains every misclassified test case plus
--correct correctly classified cases that have lesion boxes (NORMAL scans have none), for the model's call.
Occlusion uses window 20 and stride 20 by default (144 forwards per map at 224 px, a quarter of the product's
default stride-10 cost) to keep a CPU run affordable. Maps are cached in the workspace, so a rerun is instant.
Two tables: a strict pointing game (the map's peak inside a box) and one with a 15 px tolerance, as in the original
pointing game (Zhang et al. 2016); stride-20 occlusion maps are 23-px blocks on the 256-px images, and a block's
peak pixel is its top-left corner, so the strict game is harsh on them.

    .venv/bin/python benchmarks/bench_pointing_game.py                        # temporary workspace
    .venv/bin/python benchmarks/bench_pointing_game.py --workspace /tmp/pg    # kept, reused on the next run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.explain import MapCache  # noqa: E402
from core.explain.case_images import CaseImages  # noqa: E402
from core.explain.case_maps import cached_maps, explain_cases, score_cases  # noqa: E402
from core.explain.explain_model import ExplainModel  # noqa: E402
from core.explain.gallery import CaseFilter, case_table, select_cases  # noqa: E402
from core.store import Workspace  # noqa: E402


def demo_run(ws: Workspace) -> str:
    """The workspace's succeeded demo run, else a new one trained here (a few minutes on a CPU)."""
    from core.train import launch_run
    from core.train.demo import DEMO_RUN_NAME, demo_run_config

    for run in ws.list_runs():
        if run["name"] == DEMO_RUN_NAME and run["status"] == "succeeded":
            return run["id"]
    started = time.perf_counter()
    run_id = launch_run(demo_run_config(ws), ws)
    print(f"training the demo run {run_id} ...", file=sys.stderr)
    while (status := ws.get_run(run_id)["status"]) not in ("succeeded", "failed", "cancelled"):
        time.sleep(3)
    if status != "succeeded":
        raise SystemExit(f"the demo run ended {status}; see {ws.runs_dir / run_id / 'train.log'}")
    print(f"trained in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run_id


def choose_cases(cases: pd.DataFrame, boxes: dict, n_correct: int, seed: int) -> pd.DataFrame:
    """Every misclassified case, plus n_correct correct cases with lesion boxes drawn at random (seeded)."""
    wrong = select_cases(cases, CaseFilter(outcome="misclassified"))
    right = select_cases(cases, CaseFilter(outcome="correct"))
    right = right[right["image_id"].map(lambda i: bool(boxes.get(i)))]
    picked = np.random.default_rng(seed).choice(len(right), size=min(n_correct, len(right)), replace=False)
    return pd.concat([wrong, right.iloc[np.sort(picked)]], ignore_index=True)


def table(summary: pd.DataFrame) -> str:
    """One line per class x outcome: each method's pointing hits / images, rate and 95% Wilson interval."""
    lines = [f"{'class':<12} {'outcome':<14} " + " ".join(f"{m:>34}" for m in summary["method"].unique())]
    keyed = summary.set_index(["method", "class", "outcome"])
    for (name, outcome), _ in summary.groupby(["class", "outcome"], sort=False):
        cells = []
        for method in summary["method"].unique():
            row = keyed.loc[(method, name, outcome)]
            n = int(row["n_images"])
            cells.append(f"{int(row['pointing_hits']):>3}/{n:<3} {row['pointing_rate']:6.1%} "
                         f"({row['pointing_low']:5.1%}-{row['pointing_high']:5.1%}) s={row['mean_positive_share']:.2f}"
                         if n else f"{'no images':>34}")
        lines.append(f"{name:<12} {outcome:<14} " + " ".join(f"{c:>34}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: a temporary one)")
    parser.add_argument("--window", type=int, default=20, help="occlusion window in input pixels (default 20)")
    parser.add_argument("--stride", type=int, default=20, help="occlusion stride (default 20: affordable on a CPU)")
    parser.add_argument("--correct", type=int, default=20, help="correct lesion cases to add (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--tolerance", type=float, default=15.0,
                        help="second table: a peak within this many pixels of a box counts as a hit (default 15, "
                             "as in the original pointing game); the first table is strict (0)")
    args = parser.parse_args(argv)

    from core.data.demo import ensure_demo
    from core.infer import predict

    root = args.workspace or Path(tempfile.mkdtemp(prefix="bench-pointing-")) / "workspace"
    ws = Workspace.open(root)
    demo = ensure_demo(ws)
    run_id = demo_run(ws)
    frame = predict(run_id, demo["test_set_id"], workspace=ws)
    model = ExplainModel.load(ws.runs_dir / run_id, run_id=run_id, device=args.device)
    images = CaseImages.from_workspace(ws, demo["test_set_id"])
    boxes, _ = images.boxes(ws.demo_dir / "lesions.csv")
    cases = case_table(frame, model.classes)
    chosen = choose_cases(cases, boxes, args.correct, args.seed)
    targets = [(i, model.class_index(t)) for i, t in zip(chosen["image_id"], chosen["target_class"])]
    methods = {"occlusion": {"window": args.window, "stride": args.stride}, "gradcam": {}}

    cache = MapCache.for_workspace(ws)
    timings = {}
    for method, params in methods.items():
        run = explain_cases(model, images, targets, {method: params}, cache)
        if run.failed:
            print("\n".join(run.failed), file=sys.stderr)
        timings[method] = (run.computed, run.cached, run.seconds)
    maps = {method: cached_maps(model, images, targets, method, params, cache) for method, params in methods.items()}
    summaries = {tolerance: score_cases(chosen, maps, boxes, model.classes, tolerance=tolerance)[1]
                 for tolerance in dict.fromkeys([0.0, args.tolerance])}

    accuracy = float(cases["correct"].mean())
    print(f"workspace {ws.root}; run {run_id} ({model.card.get('backbone')}, input {model.input_hw[1]} px, "
          f"{model.seconds_per_image() * 1000:.1f} ms per forward on {next(model.model.parameters()).device})")
    print(f"demo test split: {len(cases)} images, accuracy {accuracy:.1%}, {int((~cases['correct']).sum())} "
          f"misclassified; explained {len(chosen)} cases ({int((~chosen['correct']).sum())} misclassified + "
          f"{int(chosen['correct'].sum())} correct with lesion boxes) for the model's call")
    for method, (computed, cached, seconds) in timings.items():
        per_map = seconds / computed if computed else float("nan")
        print(f"{method}: {computed} maps computed ({per_map:.2f} s each), {cached} from the cache; params "
              f"{methods[method] or 'defaults'}")
    for tolerance, summary in summaries.items():
        print(f"\npointing game, peak inside a box{f' or within {tolerance:g} px of one' if tolerance else ''}: "
              "hits/images with boxes, rate (95% Wilson), s = mean share of positive attribution in the boxes")
        print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
