"""Per-reader summaries for the JSON report and the Penalties page: each reader's calls next to the model's on
the same images (confusion, accuracy, weighted error, kappa, default binary view, McNemar)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.data.tasks import Task
from core.errors import InputError
from core.infer.predictions import with_predicted
from core.metrics.comparisons import compare_correctness
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.intervals import proportion_ci
from core.metrics.kappa import kappa_from_table
from core.metrics.multiclass import class_indices
from core.metrics.penalties import confusion_counts, weighted_error
from core.readers.compare import normalised_readings

def _calls_summary(truth: np.ndarray, calls: np.ndarray, task: Task, penalty: np.ndarray,
                   confidence: float, lr_ci: str) -> dict:
    """Confusion, accuracy, weighted error, kappa and the default binary view for one set of calls."""
    k = task.num_classes
    table = confusion_counts(truth, calls, k)
    out = {
        "n_images": int(truth.size),
        "confusion": {"classes": list(task.classes), "counts": table},
        "accuracy": proportion_ci(int(np.trace(table)), int(table.sum()), confidence=confidence),
        "weighted_error": weighted_error(table, penalty),
        "kappa": kappa_from_table(table, weights="quadratic" if task.kind == "ordinal" else None,
                                  confidence=confidence, labels=task.classes).kappa,
    }
    view = task.default_view()
    if view is not None:
        pos = [task.class_index(c) for c in view.positive]
        neg = [task.class_index(c) for c in view.negative]
        inside = np.isin(truth, pos + neg)
        counts = counts_from_labels(np.isin(truth[inside], pos), np.isin(calls[inside], pos))
        rates = diagnostic_metrics(*counts, confidence=confidence, lr_ci=lr_ci)
        out["binary_view"] = {"name": view.name, "counts": rates.counts(), **rates.rates()}
    return out


def reader_summaries(readings: pd.DataFrame, predictions: pd.DataFrame, task: Task, penalty=None,
                     confidence: float = 0.95, lr_ci: str = "log") -> dict:
    """For each reader: their metrics, the model's metrics on exactly the images they read, and McNemar.

    `readings`: reader_id, image_id, label (as from core.readers.load_readings). `predictions`: the
    predictions table (image_id, label, predicted). Images a reader graded that are not in the
    predictions table are ignored and counted.
    """
    if task.kind == "multilabel":
        raise InputError("per-reader metrics are not defined for multi-label tasks")
    frame = normalised_readings(readings, task)
    penalty = task.penalty() if penalty is None else np.asarray(penalty, dtype=float)
    truth_table = with_predicted(predictions, task)[["image_id", "label", "predicted"]].copy()
    truth_table["image_id"] = truth_table["image_id"].astype(str)
    merged = frame.merge(truth_table, on="image_id", how="inner", suffixes=("_reader", ""))
    out: dict = {}
    for reader_id, part in merged.groupby("reader_id", sort=True):
        truth = class_indices(part["label"], task.classes)
        calls = class_indices(part["label_reader"], task.classes)
        model_calls = class_indices(part["predicted"], task.classes)
        entry = {
            "images_not_in_predictions": int((frame["reader_id"] == reader_id).sum() - len(part)),
            "reader": _calls_summary(truth, calls, task, penalty, confidence, lr_ci),
            "model_on_same_images": _calls_summary(truth, model_calls, task, penalty, confidence, lr_ci),
            # Positive difference in b - c means the model was right where the reader was not.
            "mcnemar_model_vs_reader": compare_correctness(truth, model_calls, calls, method="exact"),
        }
        if "seconds" in readings.columns:
            seconds = pd.to_numeric(part["seconds"], errors="coerce").dropna()
            entry["median_seconds"] = float(seconds.median()) if len(seconds) else math.nan
        out[str(reader_id)] = entry
    return out


def reader_confusions(readings: pd.DataFrame | None, predictions: pd.DataFrame, task: Task) -> dict[str, dict]:
    """Per reader: their confusion counts and the model's on the same images (penalty-free, so build once).

    Returns {reader_id: {"reader": counts, "model": counts, "images": n}} from reader_summaries.
    """
    if readings is None or readings.empty:
        return {}
    results = reader_summaries(readings, predictions, task)
    return {reader: {"reader": np.asarray(entry["reader"]["confusion"]["counts"]),
                     "model": np.asarray(entry["model_on_same_images"]["confusion"]["counts"]),
                     "images": int(entry["reader"]["n_images"])}
            for reader, entry in results.items()}
