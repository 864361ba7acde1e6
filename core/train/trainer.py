"""run_training: resolve a run's config and data, pick device and precision, and run features or fine-tune mode."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from core.data import Dataset
from core.errors import InputError
from core.store import Workspace
from core.train.config import RunConfig, as_config
from core.train.context import RunContext
from core.train.distributed import DistInfo, current
from core.train.events import EventWriter, _clean
from core.train.plan import prepare_data
from core.train.progress import Progress
from core.train.recipe import amp_dtype, resolve_device, seed_everything, set_threads
from core.train.status import registered_run_id

SUMMARY_FILE = "summary.json"


def resolve_config(cfg: RunConfig, data) -> RunConfig:
    """Fill in what the data decides (the dataset's task and fingerprint), so config.json repeats the run."""
    task = (data.source_task or data.task).to_dict()
    augment = cfg.augment
    if cfg.mode == "finetune" and cfg.augmentation:
        from core.models import DEFAULT_AUGMENT

        # The augmentation actually used, spelled out (defaults may change between versions).
        augment = {k: list(v) if isinstance(v, tuple) else v for k, v in {**DEFAULT_AUGMENT, **(augment or {})}.items()}
    return cfg.replace(task=task, dataset_fingerprint=data.source_fingerprint, augment=augment,
                       data=str(Path(cfg.data).expanduser().resolve()) if cfg.data else cfg.data)


def run_training(config: RunConfig | dict, run_dir: str | Path | None = None,
                 workspace: Workspace | str | Path | None = None, *, resume: bool = False,
                 listener: Callable[[dict], None] | None = None, dist: DistInfo | None = None,
                 dataset: Dataset | None = None, log: Callable[[str], None] = print) -> dict:
    """Train one run in this process and return its summary (best epoch, validation and test scores).

    run_dir receives config.json (resolved), events.jsonl, checkpoint/ and summary.json; None trains
    without writing (benchmarks). Status bookkeeping (queued/running/...) is the caller's (runner.py)."""
    start = time.perf_counter()
    cfg = as_config(config)
    dist = dist or current()
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    run_dir = Path(run_dir) if run_dir is not None else None
    set_threads()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device, dist)
    data = prepare_data(cfg, dataset)
    resolved = resolve_config(cfg, data)
    if resume and cfg.dataset_fingerprint and cfg.dataset_fingerprint != data.source_fingerprint:
        raise InputError(f"{cfg.data}: the dataset changed since this run started (fingerprint "
                         f"{cfg.dataset_fingerprint[:12]} then, {data.source_fingerprint[:12]} now); cannot resume")
    if len(data.train_rows) == 0:
        raise InputError(f"{cfg.data}: no training images left after the split and the data limit")
    if run_dir is not None and dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved.save(run_dir / "config.json")
        run_id = registered_run_id(ws, run_dir)
        if run_id is not None:
            # The registry's task column names the task the data decided (not "auto").
            ws.update_run(run_id, config=resolved.to_dict(), task=(resolved.task or {}).get("name") or "custom")
    events = EventWriter(run_dir, listener, enabled=dist.is_main)
    ctx = RunContext(cfg=resolved, run_dir=run_dir, workspace=ws, data=data, device=device,
                     amp_dtype=amp_dtype(cfg.amp, device),
                     channels_last=cfg.channels_last if cfg.channels_last is not None else device.type == "cuda",
                     events=events, dist=dist, resume=resume, log=log if dist.is_main else (lambda *_: None))
    if device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    events.write("status", status="running", message=f"loading the {cfg.backbone} "
                 f"backbone{' and its weights' if cfg.pretrained else ''} on {device}", device=str(device),
                 world_size=dist.world_size,
                 amp=str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else None,
                 images=data.describe(), resumed=resume, mode=cfg.mode, backbone=cfg.backbone)
    ctx.log(f"{cfg.mode} run on {device} ({dist.world_size} process(es)); images: {data.describe()}")

    def progress_factory(total_steps: int, done_steps: int = 0) -> Progress:
        return Progress(events, total_steps, done_steps)

    try:
        if cfg.mode == "features":
            from core.train.features_mode import train_features_mode

            summary = train_features_mode(ctx, progress_factory)
        else:
            from core.train.finetune import train_finetune_mode

            summary = train_finetune_mode(ctx, progress_factory)
        summary.update(device=str(device), world_size=dist.world_size, seconds=time.perf_counter() - start,
                       images=data.describe(), task=data.task.name)
        if dist.is_main and not summary.get("worker"):
            events.write("summary", **{k: v for k, v in summary.items() if k != "feature_cache"})
            if run_dir is not None:
                (run_dir / SUMMARY_FILE).write_text(json.dumps(_clean(summary), indent=2, default=str))
        return summary
    finally:
        events.close()


def read_summary(run_dir: str | Path) -> dict:
    try:
        return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
