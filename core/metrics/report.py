"""The evaluation report: every metric that applies to a task, from one predictions table, as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.data.tasks import Task, get_task
from core.errors import InputError
from core.store.integrity import DamagedFileError, verify_frame
from core.metrics.calibration import brier_score, reliability_bins, top_label_reliability
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.imbalance import predictive_values_at_prevalence
from core.metrics.intervals import check_confidence
from core.metrics.jsonsafe import to_jsonable
from core.metrics.multiclass import check_probabilities, class_indices, multiclass_metrics
from core.metrics.multilabel import multilabel_metrics, ordinal_agreement
from core.metrics.operating import BinaryScores
from core.metrics.penalties import check_penalty_matrix, compare_decision_rules
from core.metrics.reader_metrics import reader_summaries
from core.metrics.referral import binary_view_data, referral_score, tier_confusion
from core.metrics.uncertainty import bootstrap_macro_auc, bootstrap_multiclass

# Prevalences at which PPV/NPV are re-computed for the headline view (screening to referral clinic).
REPORT_PREVALENCES = (0.01, 0.05, 0.1, 0.2, 0.5)
# Enough points to draw an ROC curve; the full curve of 100,000 cases stays in memory, not in the file.
MAX_CURVE_POINTS = 200


def probability_columns(task: Task) -> list[str]:
    return [f"prob_{c}" for c in task.classes]


def check_predictions(df: pd.DataFrame, task: Task) -> None:
    """InputError naming every missing column of a predictions table for this task."""
    if not isinstance(df, pd.DataFrame):
        raise InputError("predictions must be a table (pandas DataFrame)")
    needed = ["image_id", "label", *probability_columns(task)]
    if task.kind == "multilabel":
        needed += [f"true_{c}" for c in task.classes]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"predictions table lacks columns {missing} for task {task.name!r}")
    if len(df) == 0:
        raise InputError("predictions table has no rows")


def _patient_ids(df: pd.DataFrame):
    """Patient ids when the table has any; None means each image stands alone."""
    if "patient_id" not in df.columns or df["patient_id"].isna().all():
        return None
    return df["patient_id"].to_numpy(dtype=object)


def _curve_points(scores: BinaryScores) -> dict:
    curve = scores.curve(drop_intermediate=True)
    keep = np.arange(curve.fpr.size)
    if keep.size > MAX_CURVE_POINTS:
        keep = np.unique(np.linspace(0, curve.fpr.size - 1, MAX_CURVE_POINTS).round().astype(int))
    return {"fpr": curve.fpr[keep], "tpr": curve.tpr[keep], "thresholds": curve.thresholds[keep]}


def _operating_point_entry(point, confidence: float) -> dict:
    rates = point.metrics(confidence=confidence)
    return {"threshold": point.threshold, "rule": point.rule, "counts": rates.counts(), **rates.rates(),
            "youden_j": rates.youden_j}


def _binary_view_section(truth, probs, calls, task: Task, view, threshold: float, confidence: float) -> dict:
    data = binary_view_data(truth, probs, task.classes, view, y_pred=calls)
    section = {"name": view.name, "positive": list(view.positive), "negative": list(view.negative),
               "n": int(data.truth.size), "n_positive": int(data.truth.sum())}
    if data.truth.size == 0:
        section["reason"] = "no test images belong to this view's classes"
        return section
    scores = BinaryScores(data.truth, data.scores)
    section["auc"] = scores.auc(confidence)
    points = {"threshold": scores.at_threshold(threshold)}
    if scores.n_positive and scores.n_negative:
        points.update(youden=scores.youden(), sensitivity_0_95=scores.threshold_for_sensitivity(0.95),
                      specificity_0_95=scores.threshold_for_specificity(0.95))
        section["roc_curve"] = _curve_points(scores)
    section["operating_points"] = {name: _operating_point_entry(p, confidence) for name, p in points.items()}
    # The model as deployed: positive when its predicted class is in the positive group.
    deployed = diagnostic_metrics(*counts_from_labels(data.truth, data.calls), confidence=confidence)
    section["operating_points"]["model_calls"] = {"rule": "predicted class", "counts": deployed.counts(),
                                                  **deployed.rates(), "youden_j": deployed.youden_j}
    section["at_prevalence"] = [
        dict(zip(("prevalence", "ppv", "npv"), (p, *predictive_values_at_prevalence(deployed, p))))
        for p in REPORT_PREVALENCES]
    calibration = reliability_bins(data.scores, data.truth)
    section["calibration"] = {"ece": calibration.ece, "brier": brier_score(data.truth.astype(int), data.scores)}
    return section


def _single_label_report(df, task, penalty, threshold, bootstrap, seed, confidence) -> dict:
    probs = check_probabilities(df[probability_columns(task)].to_numpy(dtype=float), task.num_classes)
    truth = class_indices(df["label"], task.classes)
    calls = class_indices(df["predicted"], task.classes) if "predicted" in df.columns else probs.argmax(axis=1)
    summary = multiclass_metrics(truth, probs, task.classes, y_pred=calls, confidence=confidence)
    report: dict = {
        "class_counts": dict(zip(task.classes, np.bincount(truth, minlength=task.num_classes).tolist())),
        "prevalence": dict(zip(task.classes, (np.bincount(truth, minlength=task.num_classes) / truth.size))),
        "confusion": {"classes": list(task.classes), "counts": summary.confusion.counts,
                      "row_normalised": summary.confusion.row_normalised,
                      "column_normalised": summary.confusion.column_normalised},
        "accuracy": summary.accuracy,
        "balanced_accuracy": summary.balanced_accuracy,
        "cross_entropy": summary.cross_entropy,
        "macro_auc": summary.macro_auc,
        "weighted_auc": summary.weighted_auc,
        "per_class": {c.name: {"n": c.n_cases, "auc": c.auc, "counts": c.rates.counts(), **c.rates.rates()}
                      for c in summary.per_class},
    }
    for index, name in enumerate(task.classes):
        one_vs_rest = BinaryScores(truth == index, probs[:, index])
        if one_vs_rest.n_positive and one_vs_rest.n_negative:
            report["per_class"][name]["roc_curve"] = _curve_points(one_vs_rest)
    comparison = compare_decision_rules(truth, probs, penalty)
    report["penalty"] = {
        "matrix": penalty,
        "argmax": {"weighted_error": comparison.argmax_weighted_error, "confusion": comparison.argmax_confusion},
        "min_penalty": {"weighted_error": comparison.min_penalty_weighted_error,
                        "confusion": comparison.min_penalty_confusion},
        "changed_calls": comparison.changed_calls,
        "improvement": comparison.improvement,
        "predicted_calls_weighted_error": float(penalty[truth, calls].mean()),
    }
    if bootstrap:
        intervals = bootstrap_multiclass(truth, probs, y_pred=calls, penalty=penalty, patient_ids=_patient_ids(df),
                                         n_resamples=bootstrap, confidence=confidence, seed=seed)
        report["bootstrap"] = intervals
    report["binary_views"] = [_binary_view_section(truth, probs, calls, task, v, threshold, confidence)
                              for v in task.binary_views]
    urgent = task.urgent_classes()
    if task.referral_levels:
        report["referral"] = {"tiers": tier_confusion(truth, calls, task)}
        if urgent and len(urgent) < task.num_classes:
            score = BinaryScores(np.isin(truth, [task.class_index(c) for c in urgent]),
                                 referral_score(probs, task.classes, urgent))
            report["referral"].update(urgent_classes=list(urgent), urgent_auc=score.auc(confidence))
    top = top_label_reliability(truth, probs)
    report["calibration"] = {"top_label": top, "ece": top.ece, "brier": brier_score(truth, probs)}
    if task.kind == "ordinal":
        report["ordinal"] = ordinal_agreement(truth, calls, task.classes, confidence=confidence)
    return report


def _multilabel_report(df, task, threshold, bootstrap, seed, confidence) -> dict:
    probs = check_probabilities(df[probability_columns(task)].to_numpy(dtype=float), rows_sum_to_one=False)
    truth = df[[f"true_{c}" for c in task.classes]].to_numpy(dtype=float)
    summary = multilabel_metrics(truth, probs, task.classes, confidence=confidence)
    per_label = {}
    for j, name in enumerate(task.classes):
        scores = BinaryScores(truth[:, j], probs[:, j])
        per_label[name] = {"prevalence": summary.prevalence[name], "auc": summary.per_label[name],
                           "at_threshold": _operating_point_entry(scores.at_threshold(threshold), confidence)}
    report = {"per_label": per_label, "macro_auc": summary.macro_auc}
    if bootstrap:
        report["macro_auc_bootstrap"] = bootstrap_macro_auc(truth, probs, _patient_ids(df), bootstrap,
                                                            confidence, seed)
    return report


def evaluate_predictions(df: pd.DataFrame, task, penalty=None, readings=None, threshold: float | None = None,
                         bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Everything that applies to the task, as a JSON-safe dict (floats; "inf" for infinity; null for NaN).

    df: predictions table (image_id, label, patient_id, prob_<CLASS>..., predicted). penalty: a matrix in
    class order (default: the task's). readings: a DataFrame or file for core.readers.load_readings.
    threshold: score threshold for the binary views' fixed operating point (default 0.5). bootstrap:
    resamples (0 = none), by patient when patient ids exist, seeded by `seed`.
    """
    task = get_task(task)
    level = check_confidence(confidence)
    check_predictions(df, task)
    threshold = 0.5 if threshold is None else float(threshold)
    if int(bootstrap) < 0:
        raise InputError(f"bootstrap resamples must be 0 or more, got {bootstrap}")
    patient_ids = _patient_ids(df)
    report: dict = {
        "task": {"name": task.name, "kind": task.kind, "classes": list(task.classes)},
        "n_images": len(df),
        "n_patients": int(pd.Series(patient_ids).nunique()) if patient_ids is not None else None,
        "confidence": level,
        "threshold": threshold,
        "bootstrap": {"resamples": int(bootstrap), "seed": int(seed),
                      "unit": "patients" if patient_ids is not None else "images"},
    }
    if task.kind == "multilabel":
        report["multilabel"] = _multilabel_report(df, task, threshold, int(bootstrap), seed, level)
        return to_jsonable(report)
    matrix = check_penalty_matrix(task.penalty() if penalty is None else penalty, task.num_classes)
    body = _single_label_report(df, task, matrix, threshold, int(bootstrap), seed, level)
    report["bootstrap"]["intervals"] = body.pop("bootstrap", {})
    report.update(body)
    if readings is not None:
        report["readers"] = _readers_section(readings, df, task, matrix, level)
    return to_jsonable(report)


def _readers_section(readings, df: pd.DataFrame, task: Task, penalty: np.ndarray, confidence: float) -> dict:
    table = readings
    try:
        from core.readers import load_readings
    except ImportError:  # readers package unavailable: accept an already-validated table only
        load_readings = None
    if load_readings is not None:
        table = load_readings(readings, task, known_image_ids=df["image_id"].astype(str).tolist())
    elif not isinstance(readings, pd.DataFrame):
        raise InputError("reading a readings file needs core.readers, which is not available")
    if "predicted" not in df.columns:
        probs = df[probability_columns(task)].to_numpy(dtype=float)
        df = df.assign(predicted=np.asarray(task.classes, dtype=object)[probs.argmax(axis=1)])
    return reader_summaries(table, df, task, penalty=penalty, confidence=confidence)


def read_predictions_file(path) -> tuple[pd.DataFrame, dict]:
    """A predictions parquet file and its "core" metadata (task, run id...), its values checked against the
    checksum in that metadata (DamagedFileError when the file is unreadable or damaged)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found")
    try:
        df = pd.read_parquet(path)
        meta_raw = (pq.read_schema(path).metadata or {}).get(b"core")
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, pa.ArrowException) as exc:
        # a damaged file fails in many ways inside pyarrow and pandas' metadata parsing
        raise DamagedFileError(f"{path}: not a readable predictions table ({exc})") from None
    meta = {}
    if meta_raw:
        try:
            meta = json.loads(meta_raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DamagedFileError(f"{path}: the predictions file's metadata is damaged") from None
    verify_frame(df, meta, path)
    return df, meta
