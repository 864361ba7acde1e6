"""Command line: `python -m core predict --run RUN --data PATH --out predictions.parquet`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="run a trained model over a dataset and write its predictions table",
        description="One row per image: image_id, label, patient_id, prob_<CLASS> per class, predicted. "
                    "Cached in the workspace per (model, test set): a second call does not rerun the model.")
    p.add_argument("--run", required=True, help="run id, run folder, checkpoint folder or .safetensors file")
    p.add_argument("--data", required=True, help="dataset folder, CSV manifest, .npz, .zip or dataset id")
    p.add_argument("--out", type=Path, help="also copy the table to this .parquet (or .csv) file")
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split of the dataset")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: by dataset size)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    p.add_argument("--strict", action="store_true",
                   help="refuse the set when an image cannot be decoded (default: skip such images and list them)")
    p.set_defaults(func=run_predict)


def run_predict(args) -> int:
    from core.errors import InputError
    from core.store.csv_safe import write_csv
    from core.infer.predict import predict
    from core.store import Workspace

    ws = Workspace.open()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        import time

        if sys.stderr.isatty() and (time.monotonic() - last[0] > 0.2 or done == total):
            last[0] = time.monotonic()
            print(f"\rpredicting {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    frame = predict(args.run, args.data, ws, progress, split=args.split, batch_size=args.batch_size,
                    num_workers=args.workers, device=args.device, use_cache=not args.no_cache,
                    skip_bad=not args.strict)
    skipped = frame.attrs["meta"].get("skipped_images") or []
    if skipped:
        print(f"warning: skipped {len(skipped)} image(s) that could not be decoded:", file=sys.stderr)
        for item in skipped[:20]:
            print(f"  - {item['problem']}", file=sys.stderr)
    source = Path(frame.attrs["path"])
    if args.out:
        out = args.out.expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            write_csv(frame, out)
        elif out.suffix.lower() == ".parquet":
            shutil.copyfile(source, out)
        else:
            raise InputError(f"--out {out}: write a .parquet or .csv file")
        print(f"predictions: {out}")
    print(f"{len(frame)} images; table cached at {source}")
    if len(frame) and "predicted" in frame and frame["label"].notna().all():
        print(f"accuracy {(frame['predicted'] == frame['label']).mean():.4f}")
    return 0
