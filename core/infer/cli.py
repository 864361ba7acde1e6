"""Command line: `python -m core predict --run RUN --data PATH --out predictions.parquet`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from core.data.readers.registry import data_argument_help


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="run a trained model over a dataset and write its predictions table",
        description="One row per image: image_id, label, patient_id, prob_<CLASS> per class, predicted. "
                    "Cached in the workspace per (model, test set): a second call does not rerun the model. "
                    "Under torchrun (torchrun --nproc-per-node N -m core -- predict ...) each process scores its "
                    "share of the images and rank 0 writes the one table (gloo on the CPU, NCCL on GPUs).")
    p.add_argument("--run", required=True, help="run id, run folder, checkpoint folder or .safetensors file")
    p.add_argument("--data", required=True, help=data_argument_help("a dataset id"))
    p.add_argument("--out", type=Path, help="also copy the table to this .parquet (or .csv) file")
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split of the dataset")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: by dataset size)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    p.add_argument("--strict", action="store_true",
                   help="refuse the set when an image cannot be decoded (default: skip such images and list them)")
    from core.models.precision import add_engine_flag

    add_engine_flag(p)
    p.set_defaults(func=run_predict)

    from core.metrics.model_operating_point import OPERATING_RULES

    r = subparsers.add_parser(
        "recalibrate", help="refit a model's operating point on a labelled sample of a new site (a new run)",
        description="Refit the operating point (and, when it lowers the sample's log loss, a temperature) of RUN "
                    "on labelled images from a new site, and save the result as a new run: same weights, new "
                    "operating point. RUN itself is never changed. With --sample-size N, N images (whole "
                    "patients, class-stratified) are drawn from --data and the rest show sensitivity and "
                    "specificity before and after. With --unlabelled, no labels are used: the site's class "
                    "prevalence is re-estimated (EM on the model's probabilities) and the new run's "
                    "probabilities and operating point are moved to it. With --unlabelled --standardise, each "
                    "backbone feature is instead mapped from the site's own mean and spread to training's (for an "
                    "export or acquisition change at a similar prevalence; it assumes the site's class mix is "
                    "training's).")
    r.add_argument("--run", required=True, help="run id, run folder or checkpoint of the model to recalibrate")
    r.add_argument("--data", required=True, help="labelled images of the new site: folder, manifest, .zip or id")
    r.add_argument("--sample-size", type=int, help="draw this many images to recalibrate on; the rest evaluate")
    r.add_argument("--operating-rule", choices=tuple(OPERATING_RULES), default="youden")
    r.add_argument("--target-sensitivity", type=float)
    r.add_argument("--no-temperature", action="store_true", help="refit the threshold only")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--name", help="name of the new run")
    r.add_argument("--unlabelled", action="store_true",
                   help="label-free adaptation: estimate the site's class prevalence from the model's probabilities "
                        "on --data (its labels, if any, are not read) and move the model to it")
    r.add_argument("--standardise", action="store_true",
                   help="with --unlabelled: feature standardisation against the site's own statistics instead of "
                        "EM prevalence adaptation; only for an export/acquisition change at a similar prevalence "
                        "(it moves calls the wrong way under a prevalence change)")
    r.add_argument("--out", type=Path, help="also write the recalibration record (JSON) here")
    r.set_defaults(func=run_recalibrate)


def run_predict(args) -> int:
    from core.errors import InputError
    from core.store.csv_safe import write_csv
    from core.infer.distributed import SharedPredictError, predict_shared
    from core.store import Workspace
    from core.models.precision import use_engine_flag

    use_engine_flag(args.engine)
    ws = Workspace.open()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        import time

        if sys.stderr.isatty() and (time.monotonic() - last[0] > 0.2 or done == total):
            last[0] = time.monotonic()
            print(f"\rpredicting {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        frame = predict_shared(args.run, args.data, ws, progress, split=args.split, batch_size=args.batch_size,
                               num_workers=args.workers, device=args.device, use_cache=not args.no_cache,
                               skip_bad=not args.strict)
    except SharedPredictError as exc:
        if not exc.echo:
            return 1  # a torchrun process other than rank 0: rank 0 prints the reason once
        raise
    if frame is None:
        return 0  # a torchrun process other than rank 0: its shard is merged into rank 0's table
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
    meta = frame.attrs["meta"]
    if int(meta.get("world_size") or 1) > 1 and not frame.attrs.get("cached"):
        print(f"scored by {meta['world_size']} processes: {', '.join(map(str, meta['images_per_rank']))} images")
    if len(frame) and "predicted" in frame and frame["label"].notna().all():
        print(f"accuracy {(frame['predicted'] == frame['label']).mean():.4f}")
    return 0


def run_recalibrate(args) -> int:
    from core.store import Workspace
    from core.infer.recalibrate import recalibrate

    if args.unlabelled:
        return _run_adapt(args)
    if args.standardise:
        from core.errors import InputError

        raise InputError("--standardise is a label-free adaptation: use it with --unlabelled")
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
    return _new_run_written(args, result)


def _run_adapt(args) -> int:
    from core.errors import InputError
    from core.infer.recalibrate import adapt_unlabelled
    from core.store import Workspace

    given = [flag for flag, value in (("--sample-size", args.sample_size), ("--target-sensitivity",
                                      args.target_sensitivity), ("--no-temperature", args.no_temperature)) if value]
    if given:
        raise InputError(f"--unlabelled uses no labels, so {', '.join(given)} (labelled recalibration options) "
                         "cannot be used with it")
    if args.standardise:
        return _run_standardise(args)
    result = adapt_unlabelled(args.run, args.data, Workspace.open(), name=args.name, seed=args.seed)
    est = result.estimate
    print(f"label-free adaptation of {result.source_run_id} on {result.images['n']} unlabelled images "
          f"({est['method']}, {est['iterations']} iterations)")
    for cls, train in zip(est["classes"], est["train_prior"]):
        iv = est["intervals"][cls]
        print(f"  {cls}: estimated prevalence {iv['value']:.3f} (95% CI {iv['low']:.3f}-{iv['high']:.3f}); "
              f"training {train:.3f}")
    print(f"  interval: {next(iter(est['intervals'].values()))['method']}")
    if result.threshold_before is not None:
        view = result.operating_point["view"]
        print(f"  {view} threshold {result.threshold_before:.3f} -> {result.threshold_after:.3f} (same rule, on the "
              "prior-adjusted probabilities)")
    else:
        print("  no operating point: calls are the most probable class of the adjusted probabilities")
    return _new_run_written(args, result)


def _run_standardise(args) -> int:
    from core.infer.recalibrate import STANDARDISE_WARNING, adapt_unlabelled
    from core.store import Workspace

    print(f"warning: {STANDARDISE_WARNING}", file=sys.stderr)
    result = adapt_unlabelled(args.run, args.data, Workspace.open(), name=args.name, method="standardise")
    record = json.loads((Path(result.run_dir) / "adaptation.json").read_text())
    features = record["features"]
    print(f"feature standardisation of {result.source_run_id} on {result.images['n']} unlabelled images: "
          f"{features['dim']} features mapped from the site's mean and spread to the training images' "
          f"({features['training']['n']} images); {features['constant_at_site']} constant at the site set to the "
          f"training mean; features {features['computed']} computed, {features['cached']} from the cache")
    called = record.get("called_positive")
    if called:
        print(f"  {called['view']} threshold {result.threshold_before:.3f} kept; share called positive "
              f"{called['before']:.3f} -> {called['after']:.3f}")
    else:
        print("  no operating point: calls are the most probable class of the standardised probabilities")
    return _new_run_written(args, result)


def _new_run_written(args, result) -> int:
    """The end of every recalibrate variant: the record as JSON with --out, the new run's id on the last line."""
    if args.out:
        args.out.expanduser().write_text(json.dumps(result.to_dict(), indent=2))
    print(result.run_id)
    return 0
