"""Command line: `python -m core predict --run RUN --data PATH --out predictions.parquet`."""

from __future__ import annotations

import json
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

    from core.metrics.model_operating_point import OPERATING_RULES

    r = subparsers.add_parser(
        "recalibrate", help="refit a model's operating point on a labelled sample of a new site (a new run)",
        description="Refit the operating point (and, when it lowers the sample's log loss, a temperature) of RUN "
                    "on labelled images from a new site, and save the result as a new run: same weights, new "
                    "operating point. RUN itself is never changed. With --sample-size N, N images (whole "
                    "patients, class-stratified) are drawn from --data and the rest show sensitivity and "
                    "specificity before and after.")
    r.add_argument("--run", required=True, help="run id, run folder or checkpoint of the model to recalibrate")
    r.add_argument("--data", required=True, help="labelled images of the new site: folder, manifest, .zip or id")
    r.add_argument("--sample-size", type=int, help="draw this many images to recalibrate on; the rest evaluate")
    r.add_argument("--operating-rule", choices=tuple(OPERATING_RULES), default="youden")
    r.add_argument("--target-sensitivity", type=float)
    r.add_argument("--no-temperature", action="store_true", help="refit the threshold only")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--name", help="name of the new run")
    r.add_argument("--out", type=Path, help="also write the recalibration record (JSON) here")
    r.set_defaults(func=run_recalibrate)


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


def run_recalibrate(args) -> int:
    from core.store import Workspace
    from core.infer.recalibrate import recalibrate

    result = recalibrate(args.run, args.data, Workspace.open(), sample_size=args.sample_size,
                         rule=args.operating_rule, target=args.target_sensitivity,
                         temperature=not args.no_temperature, name=args.name, seed=args.seed)
    point = result.operating_point
    print(f"new run {result.run_id} (from {result.source_run_id}): {point['view']} threshold "
          f"{point['threshold']:.3f}, temperature {result.temperature:.2f}, on {result.sample['n']} images")
    for label, part in (("before", result.before), ("after", result.after)):
        if part:
            sens, spec = part["sensitivity"], part["specificity"]
            print(f"{label:>6} on the other {part['n']} images: sensitivity {sens['value']:.3f} "
                  f"({sens['low']:.3f}-{sens['high']:.3f}), specificity {spec['value']:.3f} "
                  f"({spec['low']:.3f}-{spec['high']:.3f}) [{sens['method']}]")
    if args.out:
        args.out.expanduser().write_text(json.dumps(result.to_dict(), indent=2))
    return 0
