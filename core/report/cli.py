"""`python -m core evaluate`: write the JSON evaluation report for one predictions table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.data.tasks import get_task, task_from_dict
from core.errors import InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compute every metric for a predictions table and write a JSON report",
        description="Evaluate a predictions table (parquet: image_id, label, patient_id, prob_<CLASS>..., "
                    "predicted): confusion matrices, ROC/AUC with DeLong intervals, sensitivity, specificity, "
                    "PPV, NPV and likelihood ratios with intervals, weighted error under the penalty matrix "
                    "(argmax and penalty-minimising calls), referral tiers, calibration, and patient-level "
                    "bootstrap intervals. Numbers are plain floats; infinity is written as \"inf\", "
                    "undefined values as null.")
    parser.add_argument("--predictions", required=True, type=Path, metavar="P.parquet",
                        help="predictions table written by `python -m core predict`")
    parser.add_argument("--task", default=None, metavar="NAME",
                        help="task preset name or .json/.toml task file (default: the task stored in the file)")
    parser.add_argument("--penalty", type=Path, default=None, metavar="FILE",
                        help="penalty matrix, rows = true class, columns = predicted: JSON (list of rows in class "
                             "order, or {\"classes\": [...], \"matrix\": [...]}) or CSV with class-name headers "
                             "(default: the task's matrix)")
    parser.add_argument("--readings", type=Path, default=None, metavar="R.csv",
                        help="expert readings (reader_id,image_id,label[,seconds]) for per-reader metrics")
    parser.add_argument("--out", type=Path, default=None, metavar="report.json",
                        help="where to write the report (default: print to standard output)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="score threshold for the binary views' fixed operating point (default 0.5)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for accuracy, weighted error and macro AUC (0 = none; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--subgroup", action="append", default=[], metavar="COLUMN",
                        help="analyse the model per value of this column of the test set the predictions name "
                             "(a manifest column such as sex, age or site, or an image property: image width, image "
                             "height, image aspect, JPEG quality, bit depth, file format); repeat for several")
    parser.add_argument("--data", type=Path, default=None, metavar="PATH",
                        help="with --subgroup: the test set's folder or manifest, when it is not registered in the "
                             "workspace (default: the test set the predictions name)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: $CORE_WORKSPACE or ./workspace)")
    parser.set_defaults(func=run_evaluate)
    register_report(subparsers)


def run_evaluate(args: argparse.Namespace) -> int:
    from core.infer.predictions import read_predictions
    from core.metrics.penalties import load_penalty_matrix
    from core.report.evaluate import evaluate_predictions

    df, meta = read_predictions(args.predictions)
    if args.task is not None:
        task = get_task(args.task)
    elif isinstance(meta.get("task"), dict):
        task = task_from_dict(meta["task"], source=f"{args.predictions} metadata")
    else:
        raise InputError(f"{args.predictions}: no task stored in the file; give --task NAME")
    penalty = load_penalty_matrix(args.penalty, task.classes) if args.penalty is not None else None
    if args.readings is not None and not args.readings.is_file():
        raise InputError(f"{args.readings}: readings file not found")
    subgroups = None
    if args.subgroup:
        from core.report.subgroups import predictions_test_set, subgroup_values

        test_set = predictions_test_set(meta, workspace=args.workspace, data=args.data)
        subgroups = subgroup_values(df, test_set, args.subgroup)
    report = evaluate_predictions(df, task, penalty=penalty, readings=args.readings, threshold=args.threshold,
                                  bootstrap=args.bootstrap, seed=args.seed, confidence=args.confidence,
                                  subgroups=subgroups, meta=meta)
    if meta.get("run_id"):
        report["run_id"] = meta["run_id"]
    # allow_nan=False: a stray NaN/inf would make a file other JSON readers reject.
    text = json.dumps(report, indent=2, allow_nan=False)
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{args.out}: cannot write the report ({exc.strerror})") from None
        print(f"wrote {args.out}")
    return 0


def register_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write the stakeholder report of a predictions table as PDF, HTML or JSON",
        description="The stakeholder report (headline numbers with intervals, figures, readers, decision curve, "
                    "methods paragraph, STARD/CLAIM checklist) of one predictions table. The suffix of --out picks "
                    "the format: .pdf (printed by the system Chromium), .html (self-contained, offline) or .json.")
    parser.add_argument("--predictions", required=True, type=Path, metavar="P.parquet")
    parser.add_argument("--readings", type=Path, default=None, metavar="R.csv",
                        help="expert readings (reader_id,image_id,label[,seconds]) to compare with the model")
    parser.add_argument("--out", required=True, type=Path, metavar="report.pdf")
    parser.add_argument("--threshold", type=float, default=None, help="binary views' score threshold (default 0.5)")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="N", help="bootstrap resamples (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    import time

    from core.infer.predictions import imported_provenance, read_predictions, task_of
    from core.report.build import report_from_predictions
    from core.report.pdf import write_report_file

    started = time.perf_counter()
    frame, meta = read_predictions(args.predictions)
    task = task_of(meta)
    readings = None
    if args.readings is not None:
        from core.readers.readings import load_readings

        if not args.readings.is_file():
            raise InputError(f"{args.readings}: readings file not found")
        readings = load_readings(args.readings, task)
    report = report_from_predictions(frame, task, readings=readings, threshold=args.threshold,
                                     bootstrap=args.bootstrap, seed=args.seed, confidence=args.confidence,
                                     test_set={"id": meta.get("dataset_id"), "name": args.predictions.name,
                                               "synthetic": False},
                                     scores_source=imported_provenance(meta))
    out = write_report_file(report, args.out)
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return 0
