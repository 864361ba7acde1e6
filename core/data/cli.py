"""Command line for data: `demo-data` writes the synthetic OCT demo set, `inspect` summarises any dataset,
`add-data` registers one in the workspace."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from core.data.dicom import FRAME_POLICIES, WINDOWINGS
from core.data.readers.registry import data_argument_help
from core.errors import InputError


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo-data", help="write the synthetic OCT demo dataset (Kermany file naming)",
        description="Generate procedural OCT B-scans (CNV, DME, DRUSEN, NORMAL) in the OCT2017 layout "
                    "(train|test/CLASS/CLASS-PATIENT-N.jpeg), with lesion boxes in lesions.csv. "
                    "The images are synthetic, for demos and tests only.")
    demo.add_argument("--out", type=Path, default=None,
                      help="folder to write (default: the workspace's demo dataset folder)")
    demo.add_argument("--per-class", type=int, default=120, help="training images per class (default 120)")
    demo.add_argument("--test-per-class", type=int, default=40, help="test images per class (default 40)")
    demo.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--real", action="store_true",
                      help="instead: a small REAL demo from a MedMNIST .npz you have (--npz): a few hundred of its "
                           "images as a training set and a held-out test set in the workspace, and a model trained "
                           "on them (frozen EfficientNet-Lite0 features, logistic head)")
    demo.add_argument("--npz", type=Path, help="with --real: the MedMNIST .npz (e.g. pneumoniamnist.npz)")
    demo.add_argument("--no-train", action="store_true", help="with --real: register the images only")
    demo.set_defaults(func=run_demo_data)

    inspect = subparsers.add_parser(
        "inspect", help="summarise a dataset: classes, counts, patients, image sizes, problems",
        description="Read any supported dataset (Kermany OCT2017 or chest X-ray folders, ImageFolder, "
                    "CSV manifest, MedMNIST .npz, or a zip of these) and print its classes, images per "
                    "split and class, patients, image sizes (read from file headers) and any problems. "
                    "Bad files are listed, not fatal.")
    inspect.add_argument("path", type=Path, help=data_argument_help())
    inspect.add_argument("--task", default=None,
                         help="task preset name or .json/.toml task file (default: inferred from the layout)")
    inspect.add_argument("--fingerprint", action="store_true",
                         help="also compute the content fingerprint (reads every image's bytes)")
    inspect.set_defaults(func=run_inspect)

    add = subparsers.add_parser(
        "add-data", help="add a dataset or test set to the workspace (a zip is stored de-identified)",
        description="Register a dataset folder on this machine (read in place), or store a .zip / .csv / .npz "
                    "in the workspace and register it, as the Test sets page does. DICOM files in a zip are "
                    "de-identified (DICOM PS3.15 basic profile: PatientID and UIDs pseudonymised with the "
                    "workspace's key, each file named by its new SOP Instance UID). DICOM files whose "
                    "BurnedInAnnotation is YES are refused unless --allow-burned-in.")
    add.add_argument("path", type=Path, help=data_argument_help() + ", to store in the workspace")
    add.add_argument("--role", choices=("test_set", "dataset"), default="test_set",
                     help="test_set (default) or dataset (for training)")
    add.add_argument("--task", default=None, help="task preset name or .json/.toml task file (default: inferred)")
    add.add_argument("--name", default=None, help="display name (default: the file or folder name)")
    add.add_argument("--skip-bad", action="store_true",
                     help="leave out unreadable files (and, in a zip, refused DICOM files), listing them")
    add.add_argument("--dicom-window", default="file", choices=WINDOWINGS, help="DICOM windowing (default: file)")
    add.add_argument("--dicom-frames", default="refuse", choices=FRAME_POLICIES,
                     help="DICOM multi-frame files: refuse (default) or use the first frame")
    add.add_argument("--allow-burned-in", action="store_true",
                     help="keep DICOM files whose BurnedInAnnotation is YES (text such as the patient's name may be "
                          "in the pixels): stored flagged, with PatientIdentityRemoved = NO")
    add.add_argument("--workspace", type=Path, default=None,
                     help="workspace folder (default: $CORE_WORKSPACE or ./workspace)")
    add.set_defaults(func=run_add_data)


class ConsoleProgress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, width: int = 30):
        self.label, self.width, self._last = label, width, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        end = "\n" if done >= total else ""
        print(f"\r{self.label} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def run_real_demo(args: argparse.Namespace) -> int:
    """demo-data --real: build and register the real demo here, then train its model in `python -m core.train.demo`
    (training is core.train's: a process boundary, as launch_run's own). The run id is the last line."""
    import subprocess

    from core.data.demo import REAL_DEMO_TEST_PER_CLASS, REAL_DEMO_TRAIN_PER_CLASS, build_real_demo
    from core.store import Workspace

    if args.npz is None:
        raise InputError("demo-data --real: give the MedMNIST file with --npz FILE.npz")
    per_class = args.per_class if args.per_class != 120 else REAL_DEMO_TRAIN_PER_CLASS
    test_per_class = args.test_per_class if args.test_per_class != 40 else REAL_DEMO_TEST_PER_CLASS
    ws = Workspace.open()
    built = build_real_demo(ws, args.npz, train_per_class=per_class, test_per_class=test_per_class, seed=args.seed)
    print(f"real demo from {built['file']} (task {built['task']}): {built['n_train']} training images "
          f"(dataset {built['dataset_id']}), {built['n_test']} held-out test images (test set {built['test_set_id']})")
    if args.no_train:
        print(built["dataset_id"])
        return 0
    print("training: frozen EfficientNet-Lite0 features and a logistic head (follow it on the Train page)...",
          flush=True)
    done = subprocess.run([sys.executable, "-m", "core.train.demo"], check=False, cwd=Path(__file__).resolve().parents[2])
    if done.returncode == 0:
        print(f"next: python -m core predict --run RUN --data {built['test_set_id']}  (or the Test sets page)",
              file=sys.stderr)
    return done.returncode


def run_demo_data(args: argparse.Namespace) -> int:
    if args.real:
        return run_real_demo(args)
    from core.data.synthetic import generate_demo_dataset  # lazy: only this command needs the generator

    out = args.out
    if out is None:
        from core.store import Workspace

        out = Workspace.open().demo_dir
    summary = generate_demo_dataset(out, per_class=args.per_class, test_per_class=args.test_per_class,
                                    size=args.size, seed=args.seed, progress=ConsoleProgress("demo images"))
    print(f"synthetic demo dataset written to {out}")
    for key, value in (summary or {}).items():
        if isinstance(value, dict):  # counts per split: one line each
            for split, per_class in value.items():
                print(f"  {key} {split}: " + (", ".join(f"{c} {n}" for c, n in per_class.items())
                                             if isinstance(per_class, dict) else str(per_class)))
        else:
            print(f"  {key}: {value}")
    return 0


def _size_summary(paths) -> str:
    from core.data.images import image_size

    sizes, unreadable = [], 0
    for p in paths:
        try:
            sizes.append(image_size(p))
        except InputError:
            unreadable += 1
    if not sizes:
        return "no readable image headers"
    w, h = np.array(sizes).T
    distinct = len(set(sizes))
    text = (f"width min/median/max {w.min()}/{int(np.median(w))}/{w.max()} px, "
            f"height {h.min()}/{int(np.median(h))}/{h.max()} px "
            f"({distinct} distinct size{'s' if distinct != 1 else ''})")
    return text + (f"; {unreadable} unreadable" if unreadable else "")


def run_inspect(args: argparse.Namespace) -> int:
    from core.data.loading import load_dataset
    from core.data.splits import patient_overlap

    ds = load_dataset(args.path, args.task, skip_bad=True)
    task = ds.task
    print(f"dataset: {ds.source}")
    print(f"task: {task.name} ({task.kind}) - {task.title}")
    print(f"classes: {', '.join(task.classes)}")
    patients = ds.patients()
    print(f"images: {len(ds)}    patients: {len(patients) if patients else 'no patient ids'}")
    counts = ds.class_counts()
    counts["total"] = counts.sum(axis=1)
    if len(counts) > 1:
        counts.loc["total"] = counts.sum(axis=0)
    print("\nimages per split and class" + (" (positive labels)" if ds.is_multilabel else "") + ":")
    print(counts.to_string())
    if patients:
        with_id = ds.table.dropna(subset=["patient_id"])
        split = with_id["split"].fillna("unsplit")
        order = [s for s in (*ds.splits(), "unsplit") if (split == s).any()]
        print("\npatients per split: " + ", ".join(f"{s} {with_id.loc[split == s, 'patient_id'].nunique()}"
                                                  for s in order))
        overlap = patient_overlap(ds)
        for (a, b), shared in overlap.items():
            print(f"warning: {len(shared)} patient(s) appear in both {a} and {b} (e.g. {', '.join(shared[:3])})")
    print(f"\nimage sizes ({'from array shapes' if ds.table['path'].iat[0].startswith('npz:') else 'from headers'}): "
          f"{_size_summary(ds.table['path'])}")
    if args.fingerprint:
        print(f"fingerprint: {ds.fingerprint}")
    print(f"\nproblems: {len(ds.problems) or 'none'}")
    for line in ds.problems[:50]:
        print(f"  - {line}")
    if len(ds.problems) > 50:
        print(f"  ... and {len(ds.problems) - 50} more")
    return 0


def run_add_data(args: argparse.Namespace) -> int:
    from core.data.dicom import DicomOptions
    from core.data.ingest import ingest_upload, register_folder
    from core.store import Workspace

    ws = Workspace.open(args.workspace)
    dicom = DicomOptions(args.dicom_window, args.dicom_frames, "keep" if args.allow_burned_in else "refuse")
    dicom = None if dicom.is_default else dicom
    common = {"role": args.role, "task": args.task, "name": args.name, "skip_bad": args.skip_bad, "dicom": dicom}
    path = args.path.expanduser()
    if path.is_file():
        with open(path, "rb") as data:
            added = ingest_upload(ws, path.name, data, **common)
    else:
        added = register_folder(ws, path, **common)
    record = added.record
    print(f"{'already registered' if added.reused else 'registered'}: {record['id']} ({record['name']}), "
          f"{record['n_images']} images, task {record['task']}")
    kept = record["meta"].get("burned_in_annotation") or []
    if kept:
        print(f"warning: {len(kept)} DICOM file(s) kept with burned-in annotation (flagged, "
              f"PatientIdentityRemoved = NO), e.g. {', '.join(kept[:3])}")
    problems = record["meta"].get("problems") or []
    for line in problems[:20]:
        print(f"  - {line}")
    return 0
