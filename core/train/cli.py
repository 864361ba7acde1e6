"""Command line: `python -m core train ...` trains one run in this process (also under torchrun)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.data.readers.registry import data_argument_help
from core.errors import InputError

# CLI flag -> RunConfig field, for flags that map one to one.
_FIELDS = {"data": "data", "backbone": "backbone", "mode": "mode", "epochs": "epochs", "batch_size": "batch_size",
           "lr": "lr", "weight_decay": "weight_decay", "per_class": "per_class", "fraction": "fraction",
           "balance": "balance", "head": "head", "image_size": "image_size", "val_metric": "val_metric",
           "val_fraction": "val_fraction", "patience": "patience", "seed": "seed", "device": "device",
           "workers": "num_workers", "amp": "amp", "accumulate": "accumulate", "warmup_epochs": "warmup_epochs",
           "bn": "bn", "weights_file": "weights_file", "name": "name", "optimizer": "optimizer",
           "schedule": "schedule", "framing": "framing", "head_fit": "head_fit", "views": "views",
           "operating_rule": "operating_rule", "target_sensitivity": "target_sensitivity"}


def register(subparsers) -> None:
    from core.metrics.model_operating_point import OPERATING_RULES
    from core.models.preprocess import FRAMINGS
    from core.train.config import AMP_MODES, BALANCE, BN_MODES, HEAD_FITS, HEADS, MODES, OPTIMIZERS, SCHEDULES, \
        VAL_METRICS

    p = subparsers.add_parser(
        "train", help="train a classifier (features or fine-tune mode)",
        description="Train a classifier by transfer learning. features: frozen backbone, cached bottleneck "
                    "features, a new head (Kermany et al.'s method). finetune: train the last stages or all. "
                    "Runs under torchrun as well (DistributedDataParallel).")
    src = p.add_argument_group("what to train")
    src.add_argument("--data", help=data_argument_help())
    src.add_argument("--task", help="task preset name or .json/.toml task file (default: inferred)")
    src.add_argument("--config", type=Path, help="a run config JSON file (flags given as well override it)")
    src.add_argument("--backbone", help="backbone name (default tf_efficientnet_lite0)")
    src.add_argument("--mode", choices=MODES)
    src.add_argument("--head", choices=HEADS)
    src.add_argument("--binary", metavar="VIEW|POS[,POS][:NEG[,NEG]]",
                     help="one-vs-rest run: a binary view of the task (e.g. 'CNV vs NORMAL') or classes POS:NEG")
    src.add_argument("--weights-file", help="local weights file for the backbone")
    lim = src.add_mutually_exclusive_group()
    lim.add_argument("--per-class", type=int, help="limited-data run: N training images per class")
    lim.add_argument("--fraction", type=float, help="limited-data run: this fraction of each class")
    opt = p.add_argument_group("recipe")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float), ("--weight-decay", float),
                       ("--image-size", int), ("--val-fraction", float), ("--patience", int), ("--seed", int),
                       ("--workers", int), ("--accumulate", int), ("--warmup-epochs", float)):
        opt.add_argument(flag, type=kind)
    opt.add_argument("--framing", choices=tuple(FRAMINGS),
                     help="how images are framed into the input: " + "; ".join(f"{k}: {v}" for k, v in FRAMINGS.items())
                     + " (default squash)")
    opt.add_argument("--head-fit", choices=HEAD_FITS,
                     help="features mode: logistic = L2 logistic regression, strength by patient-grouped "
                          "cross-validation, on every training image (default for the linear head); adam = epochs "
                          "with a validation split")
    opt.add_argument("--views", type=int, help="features mode: acquisition views per training image (resampled, "
                                               "re-encoded, contrast-jittered copies; cached like the originals)")
    opt.add_argument("--operating-rule", choices=tuple(OPERATING_RULES),
                     help="how the model's operating point is chosen (default youden, on out-of-fold predictions)")
    opt.add_argument("--target-sensitivity", type=float, help="with --operating-rule sensitivity (default 0.95)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS)
    opt.add_argument("--schedule", choices=SCHEDULES)
    opt.add_argument("--balance", choices=BALANCE)
    opt.add_argument("--val-metric", choices=VAL_METRICS)
    opt.add_argument("--unfreeze", help="finetune: number of last stages to train, or 'all'")
    opt.add_argument("--bn", choices=BN_MODES)
    opt.add_argument("--no-augment", action="store_true", help="finetune without augmentation")
    opt.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    opt.add_argument("--amp", choices=AMP_MODES)
    from core.models.precision import add_engine_flag

    add_engine_flag(opt)
    opt.add_argument("--name")
    where = p.add_argument_group("where")
    where.add_argument("--out", type=Path, help="run folder (default: a new run in the workspace)")
    where.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)  # a prepared run (the launcher's child)
    where.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                       help="continue a fine-tune run from its last saved epoch")
    where.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def config_from_args(args):
    """A RunConfig from --config (if given) with the explicit flags laid over it."""
    from core.data.tasks import get_task
    from core.train.config import RunConfig

    base = {}
    if args.config:
        base = RunConfig.load(args.config).to_dict()
    for flag, field in _FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            base[field] = str(value) if field == "data" else value
    if args.task:
        base["task"] = get_task(args.task).to_dict()
    if args.binary:
        base["binary"] = args.binary
    if args.unfreeze is not None:
        base["unfreeze"] = "all" if args.unfreeze == "all" else _int(args.unfreeze, "--unfreeze")
    if args.no_augment:
        base["augmentation"] = False
    if not base.get("data"):
        raise InputError("train: give --data PATH (or --config with a 'data' field)")
    return RunConfig.from_dict(base, source=str(args.config or "command line"))


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{flag}: expected a number or 'all', got {text!r}") from None


class _Bar:
    """A console progress bar (tqdm) fed by the run's events."""

    def __init__(self):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.phase = None

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "extract":
            self._phase("features", event.get("total"), event.get("done"), unit="img")
        elif kind == "step":
            self._phase("training", event.get("total_steps"), event.get("step"), unit="step")
            self.bar.set_postfix(epoch=event.get("epoch"), loss=f"{event.get('loss', 0):.4f}", refresh=False)
        elif kind == "epoch" and event.get("split") == "val" and self.bar is not None:
            metric = event.get("metric")
            self.bar.write(f"epoch {event['epoch']}: val {metric} {_fmt(event.get('metric_value'))}, "
                           f"accuracy {_fmt(event.get('accuracy'))}, loss {_fmt(event.get('loss'))}")

    def _phase(self, name, total, done, unit):
        if self.phase != name:
            self.close()
            self.bar = self._tqdm(total=total, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True)
            self.phase = name
        if done is not None:
            self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _prepare_run_dir(args, ws, dist):
    """(run_dir, resume) for this invocation; a new run gets its folder (and registry row) on rank 0."""
    from core.train.distributed import broadcast_object
    from core.train.launcher import get_task_name

    if args.run_dir or args.resume:
        run_dir = Path(args.resume) if isinstance(args.resume, str) else args.run_dir
        if run_dir is None:
            raise InputError("--resume: name the run folder (--resume RUN_DIR)")
        if not (run_dir / "config.json").is_file():
            raise InputError(f"{run_dir}: not a run folder (no config.json)")
        return run_dir.resolve(), bool(args.resume)
    cfg = config_from_args(args)
    if not Path(cfg.data).expanduser().exists():
        raise InputError(f"--data {cfg.data}: no such file or folder")
    run_dir = None
    if dist.is_main:
        if args.out:
            run_dir = args.out.expanduser().resolve()
            if run_dir.exists() and any(run_dir.iterdir()):
                raise InputError(f"{run_dir}: the run folder exists and is not empty (use --resume to continue)")
            run_dir.mkdir(parents=True, exist_ok=True)
            if run_dir.parent == ws.runs_dir.resolve() and ws.get_run(run_dir.name) is None:
                _register(ws, cfg, run_dir, get_task_name(cfg))
        else:
            run_id = ws.create_run(config={**cfg.to_dict(), "task": get_task_name(cfg)}, name=cfg.name)
            ws.update_run(run_id, config=cfg.to_dict())
            run_dir = ws.runs_dir / run_id
        cfg.save(run_dir / "config.json")
    return Path(broadcast_object(str(run_dir) if run_dir else None, dist)), False


def _register(ws, cfg, run_dir: Path, task_name: str) -> None:
    run_dir.rmdir()  # create_run makes the folder itself (and refuses an existing one)
    ws.create_run(config={**cfg.to_dict(), "task": task_name}, name=cfg.name, run_id=run_dir.name)
    ws.update_run(run_dir.name, config=cfg.to_dict())


def run_train(args) -> int:
    from core.store import Workspace
    from core.train.distributed import SharedJobError, cleanup, init_distributed
    from core.train.runner import execute_run
    from core.models.precision import use_engine_flag

    use_engine_flag(args.engine)
    dist = init_distributed(args.device or "auto")
    try:
        ws = Workspace.open()
        run_dir, resume = _prepare_run_dir(args, ws, dist)
        show_bar = dist.is_main and not args.no_progress and sys.stderr.isatty()
        bar = _Bar() if show_bar else None
        if dist.is_main:
            print(f"run folder: {run_dir}", flush=True)
        try:
            code, summary = execute_run(run_dir, ws, resume=resume, listener=bar, dist=dist,
                                        log=(lambda m: bar.bar.write(m) if bar and bar.bar else print(m, flush=True)))
        except SharedJobError as exc:
            if not exc.echo:
                return 1  # a torchrun process other than rank 0: rank 0 prints the reason once
            raise
        finally:
            if bar:
                bar.close()
        if dist.is_main:
            _print_summary(run_dir, summary)
        return code
    finally:
        cleanup(dist)


def _print_summary(run_dir: Path, summary: dict) -> None:
    if summary.get("cancelled"):
        print(f"cancelled; what was saved is in {run_dir}")
        return
    lines = [f"run folder: {run_dir}"]
    metric = summary.get("metric")
    if summary.get("val"):
        lines.append(f"best epoch {summary.get('best_epoch')} of {summary.get('epochs_run')}; validation: "
                     + ", ".join(f"{k} {_fmt(summary['val'].get(k))}" for k in ("accuracy", "auroc", "kappa", "loss"))
                     + f" (selected on {metric})")
    if summary.get("test"):
        lines.append("test (the model's own calls, at its operating point, as `predict` makes them): "
                     + ", ".join(f"{k} {_fmt(summary['test'].get(k))}" for k in ("accuracy", "auroc", "kappa", "loss")))
    lines.append(f"time {summary.get('seconds', 0):.1f} s on {summary.get('device')}")
    print("\n".join(lines), flush=True)
    print(json.dumps({"run_dir": str(run_dir), "val": summary.get("val"), "test": summary.get("test")},
                     default=str), flush=True)
