"""Command line: `python -m core import-predictions --scores FILE.csv --data TEST_SET --task TASK --out P.parquet`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from core.infer.score_table import SCORE_KINDS  # torch-free (numpy, pandas)

SHOWN = 10  # names of each mismatch list printed; the metadata keeps them all (up to MISMATCH_NAMES_KEPT)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-predictions", help="import scores from elsewhere (CSV or parquet) as a predictions table",
        description="Scores of a model this workspace did not train (a vendor's table, another tool's output) "
                    "against a registered test set: one row per image (image_id or file name), one score column "
                    "per class (one for a two-class task), optionally `predicted`. Columns are matched to the "
                    "task's classes by name (or --columns); logits and percentages are detected and turned into "
                    "probabilities. The table is registered under a new 'imported' run, so every page and the "
                    "report evaluate it; images the file names that the test set lacks, and the reverse, are "
                    "listed. Prints the run id on the last line.")
    p.add_argument("--scores", required=True, type=Path, metavar="FILE.csv|.parquet",
                   help="the scores: one row per image, an image_id (or file name) column and a score column per "
                        "class")
    p.add_argument("--data", required=True, metavar="TEST_SET", help="registered test set id (or its unique name)")
    p.add_argument("--task", help="task name or task file (default: the test set's task)")
    p.add_argument("--columns", nargs="+", metavar="CLASS=COLUMN",
                   help="the score column of a class whose column name does not match it, e.g. DRUSEN=col_x "
                        "(several pairs allowed; the other classes are matched by name)")
    p.add_argument("--scores-are", choices=tuple(SCORE_KINDS),
                   help="what the scores are: " + ", ".join(SCORE_KINDS.values()) + "; logits get softmax "
                        "(sigmoid for one column or a multi-label task), percentages are divided by 100 "
                        "(default: detected from their values)")
    p.add_argument("--name", help="name of the imported run")
    p.add_argument("--out", type=Path, metavar="P.parquet", help="also copy the predictions table here")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    from core.data.tasks import get_task
    from core.errors import InputError
    from core.infer.imported import find_test_set, import_predictions, plan_import
    from core.infer.score_table import mapping_from_args, read_score_file
    from core.store import Workspace

    ws = Workspace.open()
    scores = read_score_file(args.scores)
    record = find_test_set(ws, args.data)
    task = get_task(args.task or record["task"])
    mapping = mapping_from_args(scores.columns, task, args.columns)
    plan = plan_import(ws, scores, record, task, mapping, scores_are=args.scores_are)
    print(f"scores look like {plan.detection.kind} ({plan.detection.reason}); transform: {plan.transform_note}",
          file=sys.stderr)
    align = plan.alignment
    for names, what in ((align.missing_images, "test image(s) have no score and are left out"),
                        (align.unmatched_scores, "image(s) named in the file are not in the test set")):
        if names:
            print(f"warning: {len(names):,} {what}:", file=sys.stderr)
            for name in names[:SHOWN]:
                print(f"  - {name}", file=sys.stderr)
            if len(names) > SHOWN:
                print(f"  ... ({len(names) - SHOWN:,} more, listed in the table's metadata)", file=sys.stderr)
    result = import_predictions(ws, plan, name=args.name)
    if args.out:
        out = args.out.expanduser()
        if out.suffix.lower() != ".parquet":
            raise InputError(f"--out {out}: write a .parquet file")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path, out)
        print(f"predictions: {out}")
    print(f"{len(result.frame)} images matched by {align.matched_by}; table at {result.path}"
          + (" (imported before: reused)" if result.reused else ""))
    print(result.run_id)
    return 0
