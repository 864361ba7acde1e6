"""predict(): a model's probabilities for every image of a dataset, as a cached parquet predictions table."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.data import Dataset, load_dataset
from core.data.tasks import Task, task_from_dict
from core.errors import SKIP_BAD_HINT, InputError
from core.infer.predictions import (REFERRED_COLUMN, model_calls, model_referrals, predictions_frame, probabilities,
                                    is_imported_run, read_predictions, scoring_record, write_predictions)
from core.store import Workspace
from core.store.integrity import DamagedFileError, discard_damaged, file_sha256




def resolve_model(ws: Workspace, run_or_checkpoint) -> tuple[str, Path]:
    """(run id, model.safetensors path) for a run id, run folder, checkpoint folder or .safetensors file."""
    from core.models import find_checkpoint

    text = str(run_or_checkpoint)
    run = ws.get_run(text) if "/" not in text and os.sep not in text else None
    if run is not None:
        if is_imported_run(run):  # a table of scores from a file (core.infer.imported): nothing to run
            raise InputError(f"run {run['id']} holds scores imported from a file, not a model: there is no model to "
                             "run or recalibrate; evaluate its predictions instead")
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
    return f"ckpt-{file_sha256(weights)[:16]}", weights


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
            raise InputError(ds.in_messages(f"{ds.source}: no label columns {missing} that the model predicts"))
        return ds if ds.task.classes == task.classes else Dataset(ds.table, task, ds.source, ds.problems, ds.root)
    unknown = sorted(set(ds.table["label"]) - set(task.classes))
    if unknown:
        raise InputError(ds.in_messages(f"{ds.source}: labels {unknown[:5]} are not classes of the model "
                                        f"({list(task.classes)})"))
    return ds if ds.task.classes == task.classes else Dataset(ds.table, task, ds.source, ds.problems, ds.root)


def _run_model(model, ds: Dataset, preprocessing: dict, kind: str, device: str, batch_size: int,
               num_workers: int | None, progress: Callable[[int, int], None] | None,
               precision: str = "auto", *, cache_dir: Path | None = None, engine: str | None = None,
               record: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Probabilities per row, and per row the problem of an image that could not be decoded ("" when fine).
    The model runs on the measured engine (core.models.precision.frozen_forward: ONNX Runtime with the backbone
    exported once into `cache_dir`, or torch); what ran is put in `record` (the table's `inference` metadata)."""
    import torch
    from torch.utils.data import DataLoader

    from core.data.torch_data import InferenceImages
    from core.models import build_transform
    from core.train.features import auto_workers
    from core.models.precision import frozen_forward
    from core.train.recipe import resolve_device, set_threads

    set_threads()
    dev = resolve_device(device)
    model.eval().to(dev)
    forward = frozen_forward(model, preprocessing["input_size"], dev, engine=engine, amp_mode=precision,
                             cache_dir=cache_dir, framing=preprocessing.get("framing"))
    if record is not None:
        record.update(forward.record())
    workers = auto_workers(len(ds)) if num_workers is None else num_workers
    loader = DataLoader(InferenceImages(ds, build_transform(preprocessing, train=False)), batch_size=batch_size,
                        shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if workers else None)
    out, problems, done = [], [], 0
    with torch.inference_mode():
        for x, batch_problems in loader:
            problems += list(batch_problems)
            logits = forward(x.to(dev, non_blocking=True))
            probs = torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, dim=1)
            out.append(probs.cpu().numpy())
            done += len(x)
            if progress is not None:
                progress(done, len(ds))
    return (np.concatenate(out) if out else np.zeros((0, int(model.num_classes)))), problems


def _with_referrals(frame: pd.DataFrame, task: Task, operating, band) -> pd.DataFrame:
    """The table with its `referred` column following `band` (none without a band)."""
    frame = frame.drop(columns=[REFERRED_COLUMN], errors="ignore")
    referred = model_referrals(probabilities(frame, task), task, operating, band)
    return frame if referred is None else frame.assign(**{REFERRED_COLUMN: referred})


def _from_source_predictions(ws: Workspace, card: dict, ds: Dataset, dataset_id: str, task: Task):
    """(aligned dataset, probabilities, skipped images, record) from the stored predictions of the run this one is
    derived from (card key `derived_from`: a recalibrated or label-free adapted run, whose logits are the source's
    / temperature + logit_shift), or None when there is no such link or no valid stored table to derive from."""
    link = card.get("derived_from")
    if not isinstance(link, dict) or not link.get("run_id") or task.kind == "multilabel" or link.get("input_affine"):
        return None  # a feature-standardised run's outputs depend on the features, not on the source's outputs
    record = ws.find_predictions(str(link["run_id"]), dataset_id)
    if record is None or not Path(record["path"]).exists():
        return None
    try:
        frame, meta = read_predictions(record["path"])
        temperature = float(link.get("temperature", 1.0))
        shift = np.asarray(link.get("logit_shift") or [0.0] * len(task.classes), dtype=float)
    except (DamagedFileError, TypeError, ValueError):
        return None
    ids = frame["image_id"].astype(str).tolist()
    if (meta.get("checkpoint_sha256") != link.get("checkpoint_sha256") or meta.get("dataset_fingerprint")
            != ds.fingerprint or list(meta.get("classes") or []) != list(task.classes)
            or shift.size != len(task.classes) or not temperature > 0):
        return None
    aligned = _align_to_model(ds, card, task)
    where = {str(i): k for k, i in enumerate(aligned.table["image_id"].astype(str))}
    if any(i not in where for i in ids):
        return None
    logp = np.log(np.clip(probabilities(frame, task).astype(float), 1e-300, 1.0))
    z = logp / temperature + shift
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    return (aligned.subset([where[i] for i in ids]), probs, list(meta.get("skipped_images") or []),
            {"run_id": str(link["run_id"]), "predictions": str(record["path"])})


def model_precision(card: dict) -> str:
    """Autocast for inference: 'auto' (the fast path of this device); a card whose features were extracted in
    float32 keeps float32, so its predictions match its own validation."""
    amp = (card.get("inference") or {}).get("amp")
    return "off" if amp == "float32" else "auto"


def predict(run_or_checkpoint, dataset, workspace: Workspace | str | Path | None = None,
            progress: Callable[[int, int], None] | None = None, *, dataset_id: str | None = None,
            split: str | None = None, batch_size: int = 64, num_workers: int | None = None, device: str = "auto",
            use_cache: bool = True, skip_bad: bool = True, share: Callable | None = None,
            engine: str | None = None) -> pd.DataFrame | None:
    """Probabilities of a trained model for every image of `dataset` (a Dataset, a path or a dataset id).

    The table is written to the workspace (predictions/<run>__<dataset>.parquet) and registered; a later call
    for the same model and test set returns it without running the model. `split` restricts to one split.
    `frame.attrs` holds the table's path, its metadata and whether it came from the cache.
    An image that cannot be decoded never fails the set: with skip_bad (the default) it is left out and listed
    in the metadata's `skipped_images`; skip_bad=False refuses the set, naming every such image.
    `share(aligned, score)` (core/infer/distributed.py, under torchrun) scores the images across processes and
    returns (probs, problems, images_per_rank), or None in a process that leaves the table to rank 0 (predict
    then returns None and writes nothing).
    `engine` (auto | onnx | torch; default $CORE_ENGINE, else auto) picks how the model runs; the table's metadata
    key `inference` records the engine and arithmetic used."""
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
    checkpoint_sha = file_sha256(weights)
    path = ws.predictions_path(run_id, dataset_id)
    from core.metrics.model_operating_point import ModelOperatingPoint

    operating = ModelOperatingPoint.from_dict(card.get("operating_point"), source=card_name)
    from core.metrics.selective import ReferralBand

    band = ReferralBand.from_dict(card.get("referral_band"), source=card_name) if operating else None
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
            # The fingerprint is of image content, not names: the same images reached through another folder
            # (demo --split test vs demo/test) carry other image ids, and a table under those ids would not align.
            same_ids = len(frame) == len(ds) - int(meta.get("n_excluded") or 0) and set(
                frame["image_id"].astype(str)) <= set(ds.table["image_id"].astype(str))
            if (meta.get("checkpoint_sha256") == checkpoint_sha and meta.get("dataset_fingerprint") == ds.fingerprint
                    and same_ids):
                wanted = operating.to_dict() if operating else None
                if meta.get("operating_point") != wanted:
                    # Same weights, another decision rule (an edited card): the probabilities stand, the calls
                    # follow the card's operating point.
                    probs = probabilities(frame, task)
                    frame["predicted"] = model_calls(probs, task, operating)
                    meta = {**meta, "operating_point": wanted}
                    write_predictions(frame, Path(record["path"]), meta)
                if meta.get("referral_band") != (band.to_dict() if band else None):
                    # Another referral band on the same weights: the `referred` column follows the card's band.
                    frame = _with_referrals(frame, task, operating, band)
                    meta = {**meta, "referral_band": band.to_dict() if band else None}
                    write_predictions(frame, Path(record["path"]), meta)
                if progress is not None:
                    progress(len(frame), len(frame))
                frame.attrs.update(path=str(record["path"]), meta=meta, cached=True)
                return frame
    derived = _from_source_predictions(ws, card, ds, dataset_id, task) if use_cache else None
    if derived is not None:
        # Same backbone weights as a source run whose table for these images is stored: its probabilities through
        # this run's fixed logit transform, without reading an image.
        aligned, probs, skipped, derived_meta = derived
        images_per_rank, inference = [len(aligned)], {}
        if progress is not None:
            progress(len(aligned), len(aligned))
    else:
        from core.models import load_checkpoint

        inference: dict = {}
        model, card = load_checkpoint(weights)
        aligned = _align_to_model(ds, card, task)

        def score(part: Dataset) -> tuple[np.ndarray, list[str]]:
            return _run_model(model, part, card["preprocessing"], task.kind, device, batch_size, num_workers,
                              progress, model_precision(card), cache_dir=ws.cache_dir / "onnx", engine=engine,
                              record=inference)

        if share is None:
            (probs, problems), images_per_rank = score(aligned), [len(aligned)]
        else:
            shared = share(aligned, score)
            if shared is None:
                return None  # another process of this torchrun job (rank 0) writes the table
            probs, problems, images_per_rank = shared
        derived_meta = None
        bad = [i for i, problem in enumerate(problems) if problem]
        skipped = [{"image_id": None, "problem": problem} for problem in ds.problems]  # found while loading
        skipped += [{"image_id": str(aligned.table["image_id"].iat[i]), "problem": problems[i]} for i in bad]
        if bad and not skip_bad:
            shown = "; ".join(s["problem"] for s in skipped[:5])
            raise InputError(ds.in_messages(f"{ds.source}: {len(bad)} image(s) could not be decoded: {shown}"
                                            f"{' ...' if len(bad) > 5 else ''}. {SKIP_BAD_HINT} (on the command "
                                            "line: without --strict)."))
        if bad:
            keep = np.setdiff1d(np.arange(len(aligned)), bad)
            aligned, probs = aligned.subset(keep), probs[keep]
    frame = predictions_frame(aligned, task, probs, operating, band)
    meta = {"task": task.to_dict(), "run_id": run_id, "dataset_id": dataset_id, "classes": list(task.classes),
            "created": time.time(), "checkpoint_sha256": checkpoint_sha, "dataset_fingerprint": ds.fingerprint,
            "source": ds.source, "split": split, "n_excluded": int(len(ds) - len(aligned)),
            "backbone": card.get("backbone"),
            "operating_point": operating.to_dict() if operating else None,
            "referral_band": band.to_dict() if band else None,
            "skipped_images": skipped, "derived_from": derived_meta, **scoring_record(images_per_rank),
            "inference": inference or None}
    write_predictions(frame, path, meta)
    ws.record_predictions(run_id, dataset_id, path, len(frame))
    frame.attrs.update(path=str(path), meta=meta, cached=False)
    return frame
