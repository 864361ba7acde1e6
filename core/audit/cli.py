"""`python -m core audit DATA [--against TRAIN_DATA] [--task T] [--run RUN] --out audit.json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.data.dicom import FRAME_POLICIES, WINDOWINGS, DicomOptions
from core.data.readers.registry import data_argument_help
from core.errors import InputError


def register(subparsers) -> None:
    audit = subparsers.add_parser(
        "audit", help="audit a dataset: duplicates, patient leakage, image properties, shift, label issues",
        description="Decode every image once and report exact duplicates (identical decoded pixels), near "
                    "duplicates (perceptual hash), patients in more than one split, image properties per split and "
                    "class, and with --against the shift from the training data (a test per property and a "
                    "cross-validated domain classifier on backbone features); with --run the cases most likely "
                    "mislabelled (cleanlab). The result is cached in the workspace and written as JSON.")
    audit.add_argument("data", help=data_argument_help("a registered dataset / test set id"))
    audit.add_argument("--against", default=None, help="the training data to compare with (path or registered id)")
    audit.add_argument("--task", default=None, help="task preset or task file (default: inferred from the layout)")
    audit.add_argument("--run", default=None, help="a training run id: adds label issues from its backbone features")
    audit.add_argument("--out", type=Path, required=True, help="where to write the audit JSON")
    audit.add_argument("--no-features", action="store_true",
                       help="skip backbone features (no domain classifier, no label issues): pixels only, fast")
    audit.add_argument("--image-size", type=int, default=None, help="backbone input size (default: its own)")
    audit.add_argument("--dicom-window", default="file", choices=WINDOWINGS,
                       help="DICOM windowing: the file's own window, the full range, or a preset (default: file)")
    audit.add_argument("--dicom-frames", default="refuse", choices=FRAME_POLICIES,
                       help="multi-frame DICOM: refuse (listed as unreadable) or use the first frame")
    audit.add_argument("--refresh", action="store_true", help="recompute even when a cached audit exists")
    audit.set_defaults(func=run_audit_command)


def _load(ws, text: str, task, dicom: DicomOptions | None = None):
    from core.data.ingest import load_registered
    from core.data.loading import load_dataset

    if Path(text).expanduser().exists():
        return load_dataset(text, task, skip_bad=True, dicom=dicom)
    if ws.get_dataset(text) is not None:
        return load_registered(ws, text)
    raise InputError(f"{text}: neither a dataset path nor a registered dataset id in workspace {ws.root}")


def run_audit_command(args: argparse.Namespace) -> int:
    from core.audit import AuditOptions, cached_audit
    from core.data.cli import ConsoleProgress
    from core.store import Workspace
    from core.store.files import write_atomically

    ws = Workspace.open()
    dicom = DicomOptions(args.dicom_window, args.dicom_frames)
    dicom = None if dicom.is_default else dicom
    ds = _load(ws, args.data, args.task, dicom)
    against = _load(ws, args.against, args.task, dicom) if args.against else None
    run = None
    if args.run:
        run = ws.get_run(args.run)
        if run is None:
            raise InputError(f"{args.run}: no such training run in workspace {ws.root}")
    bars: dict[str, ConsoleProgress] = {}

    def progress(step: str, done: int, total: int) -> None:
        bars.setdefault(step, ConsoleProgress(step))(done, total)

    options = AuditOptions(features=not args.no_features, image_size=args.image_size)
    report = cached_audit(ws, ds, against, run, options, progress=progress, refresh=args.refresh)
    write_atomically(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1, default=str)))
    print(f"audit of {ds.source}: {len(ds)} images" + (f", against {against.source}" if against is not None else ""))
    exact, near = report["exact_duplicates"], report["near_duplicates"]
    print(f"  exact duplicates: {len(exact['groups'])} group(s), {exact['n_extra_copies']} extra copies"
          + (f"; {len(exact['across'])} image(s) also in the training data" if exact["across"] is not None else ""))
    print(f"  near duplicates ({near['threshold_text']}): {len(near['groups'])} group(s)"
          + (f"; {len(near['across'])} image(s) close to training images" if near["across"] is not None else ""))
    leak = report["patient_leakage"]
    print(f"  patients in more than one split: {len(leak['within'])}"
          + (f"; in both datasets: {len(leak['across'])}" if leak["across"] is not None else ""))
    if report["shift"] is not None:
        shift = report["shift"]
        auc = shift["domain_classifier"].get("auc")
        print(f"  shift: {'FLAGGED' if shift['flagged'] else 'not flagged'}"
              + (f" (domain classifier AUC {auc:.3f})" if auc is not None else ""))
        for reason in shift["reasons"]:
            print(f"    - {reason}")
    if report["label_issues"] is not None:
        print(f"  label issues to review: {report['label_issues']['n_flagged']}")
    print(f"  time: {report['seconds']['total']:.1f} s (when computed); written to {args.out}")
    return 0
