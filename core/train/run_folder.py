"""Facts read back from a finished run's folder (config.json, summary.json, events.jsonl) for the evaluation pages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import InputError


def _run_dir(run: dict | None) -> Path | None:
    return Path(run["run_dir"]) if run and run.get("run_dir") else None


def run_config(run: dict | None) -> dict:
    """The run's resolved config.json (falling back to the registry's copy)."""
    folder = _run_dir(run)
    if folder is not None and (folder / "config.json").is_file():
        try:
            return json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            pass
    return dict((run or {}).get("config") or {})


def run_training_images(run: dict | None) -> int | None:
    """Number of training images the run reported in its summary (None while unknown)."""
    folder = _run_dir(run)
    if folder is None:
        return None
    try:
        summary = json.loads((folder / "summary.json").read_text())
        return int(summary["images"]["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_balance(run: dict | None) -> dict | None:
    """Class weights or sampler counts if the trainer recorded them in events.jsonl (newest record wins)."""
    folder = _run_dir(run)
    if folder is None:
        return None
    from core.train.events import read_events

    found = None
    for record in read_events(folder):
        keys = {k: record[k] for k in ("class_weights", "sampler_counts") if k in record}
        if keys:
            found = keys
    return found


def training_class_counts(config: dict) -> tuple[dict | None, str]:
    """Training images per class of a run, rebuilt from its config (split and data limit as in training), and
    where the counts come from (or why there are none). Reads the dataset's table, not its images."""
    from core.data import load_dataset
    from core.data.tasks import task_from_dict
    from core.train.config import RunConfig
    from core.train.plan import prepare_data

    if not config.get("data"):
        return None, "the run's config names no training data"
    try:
        cfg = RunConfig.from_dict(config)
        ds = load_dataset(cfg.data, task_from_dict(cfg.task) if isinstance(cfg.task, dict) else cfg.task)
        if cfg.dataset_fingerprint:
            # The run recorded its data's fingerprint; hashing every image again (minutes on the full OCT set)
            # would only reproduce it, and the counts below do not depend on it.
            ds._fingerprint = cfg.dataset_fingerprint
        data = prepare_data(cfg, ds)
        targets = data.targets(data.train_rows)
    except (InputError, OSError, ValueError, KeyError) as exc:
        return None, f"the run's training data could not be read ({exc})"
    counts = targets.sum(axis=0) if targets.ndim == 2 else np.bincount(targets, minlength=data.task.num_classes)
    return {c: int(v) for c, v in zip(data.task.classes, counts)}, "the run's training split, as its config selects it"


def run_model_card(run: dict | None) -> dict | None:
    """The run's model card (checkpoint/model_card.json), or None when the run has no checkpoint (yet).

    A card that is there but damaged is an InputError naming the file and the fault (core.models.read_card), not a
    silent None: the pages would otherwise drop the model's operating point without a word."""
    folder = _run_dir(run)
    if folder is None or not (folder / "checkpoint" / "model_card.json").is_file():
        return None
    from core.models.checkpoint import read_card

    return read_card(folder / "checkpoint" / "model_card.json")
