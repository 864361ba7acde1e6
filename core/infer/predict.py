"""predict(): a model's probabilities for every image of a dataset, as a cached parquet predictions table."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.data import Dataset, load_dataset
from core.data.tasks import Task, task_from_dict
from core.errors import InputError
from core.metrics.report import read_predictions_file as read_predictions  # the one verified reader
from core.store import Workspace
from core.store.files import write_atomically
from core.store.integrity import DIGEST_KEY, DamagedFileError, discard_damaged, frame_digest

META_KEY = b"core"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def resolve_model(ws: Workspace, run_or_checkpoint) -> tuple[str, Path]:
    """(run id, model.safetensors path) for a run id, run folder, checkpoint folder or .safetensors file."""
    from core.models import find_checkpoint

    text = str(run_or_checkpoint)
    run = ws.get_run(text) if "/" not in text and os.sep not in text else None
    if run is not None:
        return run["id"], find_checkpoint(run["run_dir"])
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{text}: neither a run id in workspace {ws.root} nor an existing run/checkpoint path")
    weights = find_checkpoint(path)
    # A run folder of this workspace keeps its run id; any other checkpoint is named by its content.
    for candidate in (path, weights.parent, weights.parent.parent):
        run = ws.get_run(candidate.name)
        if run is not None and Path(run["run_dir"]).resolve() == candidate.resolve():
            return run["id"], weights
    return f"ckpt-{_sha256(weights)[:16]}", weights


def _resolve_dataset(ws: Workspace, dataset, task: Task | None,
                     skip_bad: bool = False) -> tuple[Dataset, str | None]:
    """(Dataset, registry dataset id if the argument named one) for a Dataset, a path or a dataset id."""
    if isinstance(dataset, Dataset):
        return dataset, None
    text = str(dataset)
    record = ws.get_dataset(text) if not Path(text).exists() else None
    if record is not None:
        from core.data.ingest import load_registered

        # As registered: its own task (custom tasks too), skip-bad setting and split.
        return load_registered(ws, record["id"], skip_bad=skip_bad), record["id"]
    if not Path(text).expanduser().exists():
        raise InputError(f"{text}: neither a dataset id in workspace {ws.root} nor an existing path")
    return load_dataset(text, task, skip_bad=skip_bad), None


def _dataset_id(ws: Workspace, ds: Dataset) -> str:
    """The registry id of a dataset with this content (test sets first), else one named by the fingerprint."""
    matches = [d for d in ws.list_datasets() if d["fingerprint"] == ds.fingerprint]
    matches.sort(key=lambda d: d["role"] != "test_set")
    return matches[0]["id"] if matches else f"fp-{ds.fingerprint[:16]}"


def _align_to_model(ds: Dataset, card: dict, task: Task) -> Dataset:
    """The dataset labelled in the model's classes: binary models see their two sides only; otherwise every
    label must be one of the model's classes."""
    from core.train.plan import relabel_binary

    if card.get("binary"):
        return relabel_binary(ds, card["binary"], task)
    if task.kind == "multilabel":
        missing = [c for c in task.classes if c not in ds.table.columns]
        if missing:
            raise InputError(f"{ds.source}: no label columns {missing} that the model predicts")
        return ds if ds.task.classes == task.classes else Dataset(ds.table, task, ds.source, ds.problems, ds.root)
    unknown = sorted(set(ds.table["label"]) - set(task.classes))
    if unknown:
        raise InputError(f"{ds.source}: labels {unknown[:5]} are not classes of the model ({list(task.classes)})")
    return ds if ds.task.classes == task.classes else Dataset(ds.table, task, ds.source, ds.problems, ds.root)


def _run_model(model, ds: Dataset, preprocessing: dict, kind: str, device: str, batch_size: int,
               num_workers: int | None, progress: Callable[[int, int], None] | None,
               precision: str = "auto") -> tuple[np.ndarray, list[str]]:
    """Probabilities per row, and per row the problem of an image that could not be decoded ("" when fine)."""
    import torch
    from torch.utils.data import DataLoader

    from core.data.torch_data import InferenceImages
    from core.models import build_transform
    from core.train.features import auto_workers
    from core.train.recipe import inference_precision, resolve_device, set_threads

    set_threads()
    dev = resolve_device(device)
    dtype, channels_last = inference_precision(dev, precision)
    model.eval().to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    workers = auto_workers(len(ds)) if num_workers is None else num_workers
    loader = DataLoader(InferenceImages(ds, build_transform(preprocessing, train=False)), batch_size=batch_size,
                        shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if workers else None)
    out, problems, done = [], [], 0
    with torch.inference_mode():
        for x, batch_problems in loader:
            problems += list(batch_problems)
            x = x.to(dev, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                logits = model(x).float()
            probs = torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, dim=1)
            out.append(probs.cpu().numpy())
            done += len(x)
            if progress is not None:
                progress(done, len(ds))
    return (np.concatenate(out) if out else np.zeros((0, int(model.num_classes)))), problems


def model_precision(card: dict) -> str:
    """Autocast for inference: 'auto' (the fast path of this device); a card whose features were extracted in
    float32 keeps float32, so its predictions match its own validation."""
    amp = (card.get("inference") or {}).get("amp")
    return "off" if amp == "float32" else "auto"


def predictions_frame(ds: Dataset, task: Task, probs: np.ndarray, operating_point=None) -> pd.DataFrame:
    """The predictions table: image_id, label, patient_id, prob_<class>..., predicted (+ true_<class>).

    `predicted` is the most probable class, or, with the model's operating point (ModelOperatingPoint), the
    most probable class on the side of its view that the threshold decides."""
    table = ds.table
    frame = pd.DataFrame({"image_id": table["image_id"].astype(str).to_numpy(),
                          "label": table["label"].astype(str).to_numpy(),
                          "patient_id": table["patient_id"].astype(object).to_numpy()})
    for j, cls in enumerate(task.classes):
        frame[f"prob_{cls}"] = probs[:, j].astype(np.float64) if len(probs) else np.zeros(0)
    frame["predicted"] = _predicted(task, probs, operating_point)
    if task.kind == "multilabel":
        for cls in task.classes:
            frame[f"true_{cls}"] = table[cls].astype(int).to_numpy()
    return frame


def _predicted(task: Task, probs: np.ndarray, operating_point=None):
    """The `predicted` column: labels >= 0.5 ('|'-joined) for multi-label tasks; else the class the model's
    operating point decides, or the most probable class without one."""
    names = np.asarray(task.classes, dtype=object)
    if task.kind == "multilabel":
        return ["|".join(names[row >= 0.5]) for row in probs]
    if not len(probs):
        return np.array([], dtype=object)
    if operating_point is not None:
        from core.metrics.dashboard import calls_at_threshold

        return names[calls_at_threshold(probs, task.classes, operating_point.binary_view, operating_point.threshold)]
    return names[probs.argmax(axis=1)]


def _write_parquet(frame: pd.DataFrame, path: Path, meta: dict) -> None:
    meta = {**meta, DIGEST_KEY: frame_digest(frame, meta)}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def predict(run_or_checkpoint, dataset, workspace: Workspace | str | Path | None = None,
            progress: Callable[[int, int], None] | None = None, *, dataset_id: str | None = None,
            split: str | None = None, batch_size: int = 64, num_workers: int | None = None, device: str = "auto",
            use_cache: bool = True, skip_bad: bool = True) -> pd.DataFrame:
    """Probabilities of a trained model for every image of `dataset` (a Dataset, a path or a dataset id).

    The table is written to the workspace (predictions/<run>__<dataset>.parquet) and registered; a later call
    for the same model and test set returns it without running the model. `split` restricts to one split.
    `frame.attrs` holds the table's path, its metadata and whether it came from the cache.
    An image that cannot be decoded never fails the set: with skip_bad (the default) it is left out and listed
    in the metadata's `skipped_images`; skip_bad=False refuses the set, naming every such image."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    run_id, weights = resolve_model(ws, run_or_checkpoint)
    from core.models.checkpoint import CARD_NAME, read_card  # lazy: torch only when a model is used

    card = read_card(weights.parent / CARD_NAME)
    card_name = str(weights.parent / CARD_NAME)
    task = task_from_dict(card.get("task") or {"classes": card.get("classes") or []}, source=card_name)
    source_task = task_from_dict(card["source_task"], card_name) if card.get("source_task") else task
    ds, registered_id = _resolve_dataset(ws, dataset, source_task, skip_bad)
    if split:
        ds = ds.split_named(split)
    dataset_id = dataset_id or (registered_id if not split else None) or _dataset_id(ws, ds)
    checkpoint_sha = _sha256(weights)
    path = ws.predictions_path(run_id, dataset_id)
    from core.metrics.model_operating_point import ModelOperatingPoint

    operating = ModelOperatingPoint.from_dict(card.get("operating_point"), source=card_name)
    if use_cache:
        record = ws.find_predictions(run_id, dataset_id)
        cached = None
        if record is not None and Path(record["path"]).exists():
            try:
                cached = read_predictions(record["path"])
            except DamagedFileError as exc:  # reported and deleted; computed again below
                discard_damaged(record["path"], str(exc).removeprefix(f"{record['path']}: "))
        if cached is not None:
            frame, meta = cached
            if meta.get("checkpoint_sha256") == checkpoint_sha and meta.get("dataset_fingerprint") == ds.fingerprint:
                wanted = operating.to_dict() if operating else None
                if meta.get("operating_point") != wanted:
                    # Same weights, another decision rule (an edited card): the probabilities stand, the calls
                    # follow the card's operating point.
                    probs = frame[[f"prob_{c}" for c in task.classes]].to_numpy()
                    frame["predicted"] = _predicted(task, probs, operating)
                    meta = {**meta, "operating_point": wanted}
                    _write_parquet(frame, Path(record["path"]), meta)
                if progress is not None:
                    progress(len(frame), len(frame))
                frame.attrs.update(path=str(record["path"]), meta=meta, cached=True)
                return frame
    from core.models import load_checkpoint

    model, card = load_checkpoint(weights)
    aligned = _align_to_model(ds, card, task)
    probs, problems = _run_model(model, aligned, card["preprocessing"], task.kind, device, batch_size, num_workers,
                                 progress, model_precision(card))
    bad = [i for i, problem in enumerate(problems) if problem]
    skipped = [{"image_id": None, "problem": problem} for problem in ds.problems]  # found while loading
    skipped += [{"image_id": str(aligned.table["image_id"].iat[i]), "problem": problems[i]} for i in bad]
    if bad and not skip_bad:
        shown = "; ".join(s["problem"] for s in skipped[:5])
        raise InputError(f"{ds.source}: {len(bad)} image(s) could not be decoded: {shown}"
                         f"{' ...' if len(bad) > 5 else ''}. Fix them, or let them be skipped (skip_bad=True; "
                         "the command line without --strict)")
    if bad:
        keep = np.setdiff1d(np.arange(len(aligned)), bad)
        aligned, probs = aligned.subset(keep), probs[keep]
    frame = predictions_frame(aligned, task, probs, operating)
    meta = {"task": task.to_dict(), "run_id": run_id, "dataset_id": dataset_id, "classes": list(task.classes),
            "created": time.time(), "checkpoint_sha256": checkpoint_sha, "dataset_fingerprint": ds.fingerprint,
            "source": ds.source, "split": split, "n_excluded": int(len(ds) - len(aligned)),
            "backbone": card.get("backbone"),
            "operating_point": operating.to_dict() if operating else None,
            "skipped_images": skipped}
    _write_parquet(frame, path, meta)
    ws.record_predictions(run_id, dataset_id, path, len(frame))
    frame.attrs.update(path=str(path), meta=meta, cached=False)
    return frame
