"""Benchmark: every metric for 100,000 predictions x 4 classes with 1,000 patient-level bootstrap resamples.

Run: `.venv/bin/python benchmarks/bench_metrics.py [--n 100000] [--resamples 1000]`. Prints seconds per
component, and DeLong's scaling measured in this run: time(2n) / time(n) should be near 2 (n log n),
where an O(n^2) pairwise AUC gives near 4.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.tasks import get_task  # noqa: E402
from core.metrics import (BinaryScores, bootstrap_multiclass, cohen_kappa, compare_correctness,  # noqa: E402
                          compare_decision_rules, delong_test, multiclass_metrics, referral_score, roc_auc,
                          tier_confusion, top_label_reliability)
from core.report import evaluate_predictions  # noqa: E402


def synthetic_predictions(n: int, seed: int = 0):
    """OCT-like predictions: 4 classes, 4 images per patient, moderately good probabilities."""
    task = get_task("oct-kermany")
    rng = np.random.default_rng(seed)
    truth = rng.choice(4, size=n, p=[0.35, 0.12, 0.10, 0.43])
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), truth] += 2.0
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = np.array(task.classes, dtype=object)
    table = pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "label": classes[truth],
                          "patient_id": [f"pt{i // 4}" for i in range(n)]})
    for j, name in enumerate(task.classes):
        table[f"prob_{name}"] = probs[:, j]
    table["predicted"] = classes[probs.argmax(axis=1)]
    return task, table, truth, probs


def timed(label: str, fn, rows: list, repeat: int = 1):
    """Run fn, print wall-clock and CPU milliseconds (CPU time is steadier on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        result = fn()
    seconds = (time.perf_counter() - start) / repeat
    cpu_seconds = (time.process_time() - cpu) / repeat
    rows.append((label, seconds))
    print(f"  {label:<58s} {seconds * 1000:10.2f} ms wall {cpu_seconds * 1000:10.2f} ms cpu", flush=True)
    return result


def pairwise_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """The O(m n) definition, for the scaling contrast only."""
    pos, neg = scores[truth], scores[~truth]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (pos.size * neg.size))


def scaling() -> None:
    rng = np.random.default_rng(1)
    print("\nDeLong scaling (AUC + variance; CPU time, best of 3), doubling n:")
    previous = None
    for n in (100_000, 200_000, 400_000, 800_000):
        truth = rng.random(n) < 0.4
        scores = rng.normal(size=n) + truth
        seconds = min(timed_quiet(lambda: roc_auc(truth, scores)) for _ in range(3))
        ratio = f"x{seconds / previous:4.2f} for 2n (n log n predicts x{2 * math.log(n) / math.log(n / 2):4.2f})" \
            if previous else ""
        print(f"  n = {n:>9,d}: {seconds * 1000:9.1f} ms  {ratio}")
        previous = seconds
    print("Pairwise O(n^2) AUC, doubling n (for contrast; CPU time, best of 3):")
    previous = None
    for n in (3_000, 6_000, 12_000):
        truth = rng.random(n) < 0.4
        scores = rng.normal(size=n) + truth
        seconds = min(timed_quiet(lambda: pairwise_auc(truth, scores)) for _ in range(3))
        fast = min(timed_quiet(lambda: roc_auc(truth, scores)) for _ in range(3))
        ratio = f"x{seconds / previous:4.2f} for 2n" if previous else ""
        print(f"  n = {n:>9,d}: pairwise {seconds * 1000:8.1f} ms, DeLong midrank {fast * 1000:6.2f} ms  {ratio}")
        previous = seconds


def timed_quiet(fn) -> float:
    """CPU seconds of one call: steadier than wall-clock when other jobs share the machine."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    task, table, truth, probs = synthetic_predictions(args.n)
    penalty = task.penalty()
    patients = table["patient_id"].to_numpy(dtype=object)
    rows: list = []
    print(f"{args.n:,d} predictions x {task.num_classes} classes, {table['patient_id'].nunique():,d} patients, "
          f"{args.resamples} bootstrap resamples")
    print("Components (wall-clock and this process's CPU time; the machine may be shared):")
    timed("multiclass summary (confusion, 4 DeLong AUCs, per-class rates)",
          lambda: multiclass_metrics(truth, probs, task.classes), rows)
    urgent = np.isin(truth, [0, 1])
    score = referral_score(probs, task.classes, task.urgent_classes())
    cached = timed("BinaryScores build (urgent referral view)", lambda: BinaryScores(urgent, score), rows)
    thresholds = np.linspace(0, 1, 1000)
    timed("  at_threshold, 1,000 threshold moves", lambda: [cached.at_threshold(t) for t in thresholds], rows)
    print(f"    = {rows[-1][1] * 1e3:.1f} us per threshold move")
    timed("  threshold_for_sensitivity(0.95) + metrics", lambda: cached.threshold_for_sensitivity(0.95).metrics(),
          rows, repeat=100)
    timed("  Youden's J", cached.youden, rows, repeat=10)
    timed("  AUC with DeLong interval", lambda: roc_auc(urgent, score), rows)
    other = np.clip(score + np.random.default_rng(2).normal(0, 0.1, args.n), 0, 1)
    timed("DeLong test, two models", lambda: delong_test(urgent, score, other), rows)
    timed("McNemar on correctness, two models",
          lambda: compare_correctness(truth, probs.argmax(1), np.roll(probs.argmax(1), 1)), rows)
    timed("decision rules: argmax vs penalty-minimising", lambda: compare_decision_rules(truth, probs, penalty), rows)
    timed("referral tier confusion", lambda: tier_confusion(truth, probs.argmax(1), task), rows)
    timed("calibration (top-label bins, ECE)", lambda: top_label_reliability(truth, probs), rows)
    timed("Cohen's kappa (quadratic)", lambda: cohen_kappa(truth, probs.argmax(1), "quadratic", labels=range(4)),
          rows)
    timings: dict = {}
    timed(f"bootstrap, {args.resamples} resamples by patient (accuracy, weighted error x2, macro/weighted AUC)",
          lambda: bootstrap_multiclass(truth, probs, penalty=penalty, patient_ids=patients,
                                       n_resamples=args.resamples, timings=timings), rows)
    for name, seconds in timings.items():
        print(f"    {name:<56s} {seconds * 1000:10.2f} ms wall")
    timed(f"full JSON report (evaluate_predictions, {args.resamples} resamples)",
          lambda: evaluate_predictions(table, task, bootstrap=args.resamples), rows)
    scaling()
    return 0


if __name__ == "__main__":
    sys.exit(main())
