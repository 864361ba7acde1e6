"""Benchmark: MRMC (Obuchowski-Rockette) analysis of 10 readers x 1,000 cases x 2 treatments.

Run: `.venv/bin/python benchmarks/bench_mrmc.py [--readers 10] [--cases 1000]`. Prints seconds per
covariance method and the scaling ratio time(2 x cases) / time(cases) for the jackknife (near 2 means
the leave-one-case-out values cost O(n log n), not one full refit per case).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.metrics.mrmc import mrmc_analysis  # noqa: E402
from core.readers.mrmc_simulated import simulate_mrmc_study  # noqa: E402


def timed(readings, repeats: int = 3, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mrmc_analysis(readings, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    readings = simulate_mrmc_study(args.readers, args.cases, seed=1)
    print(f"mrmc_analysis on {args.readers} readers x {args.cases} cases x 2 treatments ({len(readings)} rows)")
    for covariance in ("jackknife", "delong", "unbiased"):
        print(f"  AUC, {covariance:9s}: {timed(readings, covariance=covariance):.3f} s")
    print(f"  sensitivity >= 0.5, jackknife: {timed(readings, figure='sensitivity', threshold=0.5):.3f} s")
    small = timed(readings)
    double = timed(simulate_mrmc_study(args.readers, 2 * args.cases, seed=1))
    print(f"  jackknife scaling time(2n)/time(n) = {double / small:.2f} (near 2 = linear-ish)")


if __name__ == "__main__":
    main()
