"""Tables the Experts page draws and exports: readers vs model, ROC crosshairs, LR forest rows, CSV export."""

from __future__ import annotations

import math

import pandas as pd

from core.data.tasks import BinaryView, Task, get_task
from core.errors import InputError
from core.readers.compare import (ModelView, is_in, model_metrics, model_roc, paired_comparison, reader_metrics,
                                  resolve_view, truth_labels)



def compare_readers_to_model(readings: pd.DataFrame, predictions: pd.DataFrame, task: str | Task,
                             view: str | BinaryView | None = None, threshold: float | None = None,
                             match: str | None = None, penalty=None, lr_ci: str = "log",
                             confidence: float = 0.95, ci: str = "wilson", kappa_weights: str | None = None,
                             n_in_set: int | None = None) -> pd.DataFrame:
    """The whole comparison, one row per reader: the reader's metrics, the model's at its operating point on
    the same cases (columns prefixed `model_`), and the paired comparison (McNemar, differences, kappa).
    A reader with no case in common with the model keeps their row, with `problem` saying why."""
    task = get_task(task)
    view = resolve_view(task, view)
    metrics = reader_metrics(readings, predictions, task, view, penalty=penalty, lr_ci=lr_ci,
                             confidence=confidence, ci=ci, n_in_set=n_in_set)
    rows = []
    for row in metrics.to_dict("records"):
        mine = readings[readings["reader_id"].astype(str) == row["reader_id"]]
        out = dict(row)
        try:
            paired = paired_comparison(mine, predictions, task, view, threshold=threshold, match=match,
                                       confidence=confidence, penalty=penalty, kappa_weights=kappa_weights)
            model = model_metrics(predictions, task, view, paired["model_threshold"], penalty=penalty,
                                  lr_ci=lr_ci, confidence=confidence, ci=ci, image_ids=mine["image_id"])
        except InputError as exc:
            out["problem"] = str(exc)
            rows.append(out)
            continue
        skip = {"reader_id", "kind", "view", "n_in_set", "ci_method", "lr_ci_method"}
        out.update({f"model_{k}": v for k, v in model.items() if k not in skip})
        out.update({k: v for k, v in paired.items() if k not in ("reader_id", "view")})
        out["problem"] = ""
        rows.append(out)
    return pd.DataFrame(rows)


def roc_points(metrics: pd.DataFrame) -> pd.DataFrame:
    """Readers as points on the ROC plane with crosshair intervals: fpr = 1 - specificity (its interval
    flipped), tpr = sensitivity. Takes reader_metrics' (or compare_readers_to_model's) table."""
    return pd.DataFrame({
        "reader_id": metrics["reader_id"], "kind": metrics["kind"],
        "fpr": 1.0 - metrics["specificity"], "fpr_low": 1.0 - metrics["specificity_high"],
        "fpr_high": 1.0 - metrics["specificity_low"], "tpr": metrics["sensitivity"],
        "tpr_low": metrics["sensitivity_low"], "tpr_high": metrics["sensitivity_high"], "n_view": metrics["n_view"]})


def lr_table(readings: pd.DataFrame, predictions: pd.DataFrame, task: str | Task,
             view: str | BinaryView | None = None, threshold: float | None = None, lr_ci: str = "log",
             confidence: float = 0.95) -> pd.DataFrame:
    """Rows for a forest plot of LR+ and LR-: the model (all cases, at its operating point) and every reader,
    each with value, interval, method and any reason an interval is degenerate."""
    task = get_task(task)
    view = resolve_view(task, view)
    rows = [model_metrics(predictions, task, view, threshold, lr_ci=lr_ci, confidence=confidence)]
    rows += reader_metrics(readings, predictions, task, view, lr_ci=lr_ci, confidence=confidence).to_dict("records")
    out = []
    for row in rows:
        for measure, label in (("lr_positive", "LR+"), ("lr_negative", "LR-")):
            out.append({"reader_id": row["reader_id"], "kind": row["kind"], "measure": label,
                        "value": row[measure], "low": row[f"{measure}_low"], "high": row[f"{measure}_high"],
                        "method": row["lr_ci_method"], "n_view": row["n_view"], "reason": row[f"{measure}_reason"]})
    return pd.DataFrame(out)


def weighted_error_table(readings: pd.DataFrame, predictions: pd.DataFrame, task: str | Task,
                         penalty=None) -> pd.DataFrame:
    """Weighted error (mean penalty per image) of each reader and of the model on that reader's cases,
    plus the model on all cases."""
    task = get_task(task)
    view = resolve_view(task, None)  # weighted error is multi-class; the view only shapes the shared table
    metrics = reader_metrics(readings, predictions, task, view, penalty=penalty)
    model_all = model_metrics(predictions, task, view, penalty=penalty)
    rows = [{"reader_id": "model", "kind": "model", "n": model_all["n_graded"],
             "weighted_error": model_all["weighted_error"], "model_weighted_error_same_cases": math.nan}]
    for row in metrics.to_dict("records"):
        ids = readings.loc[readings["reader_id"].astype(str) == row["reader_id"], "image_id"]
        same = model_metrics(predictions, task, view, penalty=penalty, image_ids=ids)
        rows.append({"reader_id": row["reader_id"], "kind": row["kind"], "n": row["n_graded"],
                     "weighted_error": row["weighted_error"],
                     "model_weighted_error_same_cases": same["weighted_error"]})
    return pd.DataFrame(rows)


def reader_report(readings: pd.DataFrame, truth, task: str | Task, predictions: pd.DataFrame | None = None,
                  n_in_set: int | None = None, view: str | BinaryView | None = None, threshold: float | None = None,
                  match: str | None = None, penalty=None, lr_ci: str = "log", confidence: float = 0.95,
                  kappa_weights: str | None = None) -> dict:
    """What a reader sees on finishing: their confusion matrix and metrics and, with the model's predictions,
    the model at its operating point on the same cases, the paired comparison and the model's ROC."""
    task = get_task(task)
    view = resolve_view(task, view)
    truth = truth_labels(truth, task)
    graded = readings[is_in(readings["image_id"].astype(str), truth.index)]
    confusion = pd.crosstab(pd.Categorical(graded["image_id"].astype(str).map(truth), categories=task.classes),
                            pd.Categorical(graded["label"], categories=task.classes), dropna=False)
    confusion.index.name, confusion.columns.name = "true class", "reader's call"
    report = {"view": view.name, "confusion": confusion, "metrics": {}, "model": None, "paired": None,
              "roc": None, "problem": ""}
    if graded.empty:
        report["problem"] = "no answers with a known truth to analyse"
        return report
    truth_table = pd.DataFrame({"image_id": truth.index, "label": truth.to_numpy()})
    report["metrics"] = reader_metrics(graded, truth_table, task, view, penalty=penalty, lr_ci=lr_ci,
                                       confidence=confidence, n_in_set=n_in_set).iloc[0].to_dict()
    if predictions is not None:
        ModelView(predictions, task, view)  # checks the table's columns before anything else
        try:
            report["paired"] = paired_comparison(graded, predictions, task, view, threshold=threshold, match=match,
                                                 confidence=confidence, penalty=penalty,
                                                 kappa_weights=kappa_weights)
        except InputError as exc:  # e.g. ended early before any case of the view: say so, keep the rest
            report["problem"] = str(exc)
            return report
        report["model"] = model_metrics(predictions, task, view, report["paired"]["model_threshold"],
                                        penalty=penalty, lr_ci=lr_ci, confidence=confidence,
                                        image_ids=graded["image_id"])
        report["roc"] = model_roc(predictions, task, view, confidence=confidence)
    return report
