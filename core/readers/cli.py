"""`python -m core mrmc`: Obuchowski-Rockette MRMC analysis of a reader-study CSV, written as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import InputError
from core.metrics.mrmc_design import DESIGNS
from core.metrics.mrmc_figures import COVARIANCES, FIGURES
from core.readers import lifecycle
from core.readers.study import list_studies
from core.store.lifecycle_cli import LifecycleCommands, add_lifecycle_command


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "mrmc",
        help="multi-reader multi-case (Obuchowski-Rockette / Hillis) analysis of reader-study readings",
        description="MRMC analysis of long-format readings (CSV columns reader, treatment, case, truth, rating; "
                    "truth 0/1, rating ordinal or a probability): reader figures of merit, OR variance "
                    "components, random-readers random-cases (Hillis df), fixed-readers and fixed-cases tests, "
                    "pairwise differences (first treatment minus second in sorted order) and per-treatment "
                    "intervals. Infinity is written as \"inf\", undefined values as null.")
    parser.add_argument("--readings", required=True, type=Path, metavar="R.csv", help="the readings CSV")
    parser.add_argument("--figure", choices=FIGURES, default="auc",
                        help="figure of merit (default auc: empirical AUC, ties count one half)")
    parser.add_argument("--covariance", choices=COVARIANCES, default="jackknife",
                        help="case-sampling covariance estimator (default jackknife; delong and unbiased: AUC only)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="sensitivity/specificity: a rating >= threshold is a positive reading")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--design", choices=DESIGNS, default=None,
                        help="study design (default: detected from the case codings)")
    parser.add_argument("--out", type=Path, default=None, metavar="result.json",
                        help="where to write the result (default: print to standard output)")
    parser.set_defaults(func=run_mrmc)
    add_lifecycle_command(subparsers, STUDIES)


# `python -m core studies list|rename|archive|restore|delete`: the runs' clean-up commands, for reader studies.
STUDIES = LifecycleCommands(
    "studies", "reader study", "readers' answers or an aided study",
    lambda ws, everything: list_studies(ws, include_archived=everything),
    lifecycle.rename_study, lifecycle.archive_study, lifecycle.delete_study,
    status=lambda s: f"{s['n_readers']} reader(s), {s['n_done']} finished")


def run_mrmc(args: argparse.Namespace) -> int:
    from core.metrics.jsonsafe import to_jsonable
    from core.metrics.mrmc import describe_difference, mrmc_analysis
    from core.readers.mrmc_readings import load_mrmc_readings

    readings = load_mrmc_readings(args.readings, design=args.design)
    result = mrmc_analysis(readings, figure=args.figure, covariance=args.covariance, threshold=args.threshold,
                           alpha=args.alpha, design=args.design)
    settings = {"figure": result.figure, "covariance": result.covariance, "design": result.design,
                "threshold": args.threshold, "alpha": result.alpha, "readers": len(result.reader_names),
                "treatments": len(result.treatment_names), "cases": result.n_cases}
    text = json.dumps({"analysis": settings, **to_jsonable(result.to_dict())}, indent=2, allow_nan=False)
    if args.out is None:
        sys.stdout.write(text + "\n")
        return 0
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{args.out}: cannot write the result ({exc.strerror})") from None
    for sentence in describe_difference(result):
        print(sentence)
    print(f"wrote {args.out}")
    return 0
