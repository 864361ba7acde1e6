"""Site recalibration: refit a model's operating point (and temperature) on a small labelled sample of a new site.

A threshold chosen on the training distribution does not carry over to another site's scanners and export
pipeline. Given 30-60 labelled images from the new site, the operating point is refitted on them by the same rule
as in training, optionally after temperature scaling (kept only when it lowers the sample's log loss), and the
result is a NEW run: same backbone weights, the head's last layer divided by the temperature, the new operating
point in its card, the recalibration recorded. The source run is never changed. When the sample is drawn from a
larger labelled set (`sample_size`), the rest of that set shows sensitivity and specificity before and after.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from core.data import Dataset
from core.data.splits import limited_subset
from core.data.tasks import Task, task_from_dict
from core.errors import InputError
from core.infer.predictions import model_calls
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.model_operating_point import (
    DEFAULT_RULE,
    ModelOperatingPoint,
    choose_operating_point,
    operating_view,
)
from core.store import Workspace

MIN_SAMPLE = 10


@dataclass(frozen=True)
class Recalibration:
    """What recalibration did: the new run, its operating point and temperature, and before/after on the rest."""

    run_id: str
    run_dir: str
    source_run_id: str
    operating_point: dict
    temperature: float
    sample: dict
    before: dict | None
    after: dict | None

    def to_dict(self) -> dict:
        return asdict(self)


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(log p / T) on the sample (1 = unchanged)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0))
    truth = np.asarray(truth, dtype=np.int64)

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(z)), truth] - np.log(np.exp(z).sum(axis=1))).mean())

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    t = math.exp(float(best.x))
    return t if nll(math.log(t)) < nll(0.0) - 1e-6 else 1.0


def scale_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0)) / float(temperature)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def split_sample(ds: Dataset, sample_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sample rows, rest rows): a class-stratified sample of whole patients, the rest for before/after."""
    if not MIN_SAMPLE <= sample_size < len(ds):
        raise InputError(f"calibration sample size must be between {MIN_SAMPLE} and {len(ds) - 1} (the data hold "
                         f"{len(ds)} images), got {sample_size}")
    sample = np.sort(limited_subset(ds, fraction=sample_size / len(ds), seed=seed))
    rest = np.setdiff1d(np.arange(len(ds)), sample)
    return sample, rest


def _sens_spec(task: Task, truth: np.ndarray, calls: np.ndarray, view) -> dict:
    """Sensitivity and specificity (Wilson intervals) of class calls collapsed onto the view."""
    # The operating view decides every class (operating_view), so every case is on one side of it.
    positive = [task.class_index(c) for c in view.positive]
    m = diagnostic_metrics(*counts_from_labels(np.isin(truth, positive), np.isin(calls, positive)))
    return {"n": int(len(truth)), "sensitivity": _interval(m.sensitivity), "specificity": _interval(m.specificity)}


def _indices(task: Task, names) -> np.ndarray:
    return np.array([task.class_index(str(n)) for n in names], dtype=np.int64)


def _interval(iv) -> dict:
    return {"value": float(iv.value), "low": float(iv.low), "high": float(iv.high), "method": str(iv.method)}


def _scaled_model(weights: Path, temperature: float):
    from core.models import get_head, load_checkpoint

    model, card = load_checkpoint(weights)
    model.weights_source = card.get("weights_source", model.weights_source)
    if temperature != 1.0:
        last = [m for m in get_head(model).modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight /= temperature
            last.bias /= temperature
    return model, card


def recalibrate(run, data, workspace: Workspace | str | Path | None = None, *, sample_size: int | None = None,
                rule: str = DEFAULT_RULE, target: float | None = None, temperature: bool = True,
                name: str | None = None, seed: int = 0, dataset_id: str | None = None) -> Recalibration:
    """Recalibrate `run` (id or folder) on labelled `data` (a path, dataset id or Dataset) into a new run.

    With `sample_size`, that many images (whole patients, class-stratified) are drawn from `data` to recalibrate
    on and the rest show before/after; without it, all of `data` is the sample and no before/after is given."""
    from core.infer.predict import _resolve_dataset, predict, resolve_model
    from core.infer.predictions import probabilities
    from core.models import save_checkpoint

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    source_id, weights = resolve_model(ws, run)
    from core.models.checkpoint import CARD_NAME, read_card

    card = read_card(weights.parent / CARD_NAME)
    task = task_from_dict(card.get("task") or {}, source=str(weights.parent / CARD_NAME))
    if task.kind == "multilabel" or operating_view(task) is None:
        raise InputError(f"{source_id}: recalibration needs a single-label task with a binary view that decides "
                         f"every case; task {task.name!r} has none")
    source_task = task_from_dict(card["source_task"], "model card") if card.get("source_task") else task
    ds, registered = _resolve_dataset(ws, data, source_task)
    frame = predict(weights, ds, ws, dataset_id=dataset_id or registered)
    probs = probabilities(frame, task)
    truth = np.array([task.class_index(str(v)) for v in frame["label"]])
    by_id = {str(i): j for j, i in enumerate(frame["image_id"])}
    if sample_size is not None:
        aligned = ds.subset([k for k, i in enumerate(ds.table["image_id"].astype(str)) if i in by_id])
        sample_rows, rest_rows = split_sample(aligned, int(sample_size), seed)
        ids = aligned.table["image_id"].astype(str).to_numpy()
        sample = np.array([by_id[i] for i in ids[sample_rows]])
        rest = np.array([by_id[i] for i in ids[rest_rows]])
    else:
        if len(frame) < MIN_SAMPLE:
            raise InputError(f"calibration sample: {len(frame)} labelled images; at least {MIN_SAMPLE} are needed")
        sample, rest = np.arange(len(frame)), np.arange(0)
    t = fit_temperature(probs[sample], truth[sample]) if temperature else 1.0
    scaled = scale_probabilities(probs, t)
    source_text = f"a site sample of {len(sample)} labelled images ({Path(str(ds.source)).name or 'uploaded'})"
    point = choose_operating_point(task, truth[sample], scaled[sample], rule, target, source=source_text)
    if point is None:
        raise InputError("calibration sample: it must hold cases of both sides of "
                         f"{operating_view(task).name!r} to set an operating point")
    before = after = None
    if len(rest):
        old = ModelOperatingPoint.from_dict(card.get("operating_point"))
        old_calls = _indices(task, model_calls(probs[rest], task, old))
        new_calls = _indices(task, model_calls(scaled[rest], task, point))
        before = _sens_spec(task, truth[rest], old_calls, point.binary_view)
        after = _sens_spec(task, truth[rest], new_calls, point.binary_view)

    source_run = ws.get_run(source_id)
    config = dict((source_run or {}).get("config") or {})  # the registry returns it parsed
    record = {"source_run": source_id, "source_checkpoint": str(weights), "data": str(ds.source),
              "dataset_fingerprint": ds.fingerprint, "sample_size": int(len(sample)), "seed": seed, "rule": rule,
              "target": target, "temperature": t, "operating_point": point.to_dict(), "before": before,
              "after": after, "created": time.time()}
    label = name or f"{(source_run or {}).get('name') or source_id} (recalibrated)"
    run_id = ws.create_run(config={**config, "extra": {**config.get("extra", {}), "recalibration": record}},
                           name=label)
    run_dir = ws.runs_dir / run_id
    try:
        model, _ = _scaled_model(weights, t)
        new_card = {**card, "operating_point": point.to_dict(), "recalibration": record, "run_id": run_id}
        save_checkpoint(model, run_dir / "checkpoint", new_card)
        source_dir = weights.parent.parent
        if (source_dir / "config.json").exists():
            shutil.copy2(source_dir / "config.json", run_dir / "config.json")
        (run_dir / "recalibration.json").write_text(json.dumps(record, indent=2))
        from core.train.status import write_status

        write_status(run_dir, ws, run_id, status="succeeded", started=time.time(), finished=time.time(),
                     device="cpu")
    except Exception:
        ws.update_run(run_id, status="failed", error="recalibration could not write the new run")
        raise
    return Recalibration(run_id, str(run_dir), source_id, point.to_dict(), t,
                         {"n": int(len(sample)), "n_rest": int(len(rest))}, before, after)
