"""The evaluation report: every metric that applies to a task, from one predictions table, as plain JSON."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data.tasks import Task, get_task
from core.errors import InputError
from core.infer.predictions import (check_predictions, patient_ids, predicted_indices, probabilities,
                                    truth_columns, with_predicted)
from core.metrics.calibration import brier_score, reliability_bins, top_label_reliability
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.imbalance import predictive_values_at_prevalence
from core.metrics.intervals import check_confidence
from core.metrics.jsonsafe import to_jsonable
from core.metrics.multiclass import class_indices, multiclass_metrics
from core.metrics.multilabel import multilabel_metrics, ordinal_agreement
from core.metrics.operating import BinaryScores
from core.metrics.penalties import check_penalty_matrix, compare_decision_rules
from core.metrics.headline import urgent_auc
from core.metrics.referral import binary_view_data, tier_confusion
from core.metrics.uncertainty import bootstrap_macro_auc, bootstrap_multiclass
from core.readers import load_readings, reader_summaries

# Prevalences at which PPV/NPV are re-computed for the headline view (screening to referral clinic).
REPORT_PREVALENCES = (0.01, 0.05, 0.1, 0.2, 0.5)
# Enough points to draw an ROC curve; the full curve of 100,000 cases stays in memory, not in the file.
MAX_CURVE_POINTS = 200


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
    probs = probabilities(df, task)
    truth = class_indices(df["label"], task.classes)
    calls = predicted_indices(df, task)
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
        intervals = bootstrap_multiclass(truth, probs, y_pred=calls, penalty=penalty, patient_ids=patient_ids(df),
                                         n_resamples=bootstrap, confidence=confidence, seed=seed)
        report["bootstrap"] = intervals
    report["binary_views"] = [_binary_view_section(truth, probs, calls, task, v, threshold, confidence)
                              for v in task.binary_views]
    urgent = task.urgent_classes()
    if task.referral_levels:
        report["referral"] = {"tiers": tier_confusion(truth, calls, task)}
        urgent_estimate = urgent_auc(truth, probs, task, confidence)
        if urgent_estimate is not None:
            report["referral"].update(urgent_classes=list(urgent), urgent_auc=urgent_estimate)
    top = top_label_reliability(truth, probs)
    report["calibration"] = {"top_label": top, "ece": top.ece, "brier": brier_score(truth, probs)}
    if task.kind == "ordinal":
        report["ordinal"] = ordinal_agreement(truth, calls, task.classes, confidence=confidence)
    return report


def _multilabel_report(df, task, threshold, bootstrap, seed, confidence) -> dict:
    probs = probabilities(df, task)
    truth = df[truth_columns(task)].to_numpy(dtype=float)
    summary = multilabel_metrics(truth, probs, task.classes, confidence=confidence)
    per_label = {}
    for j, name in enumerate(task.classes):
        scores = BinaryScores(truth[:, j], probs[:, j])
        per_label[name] = {"prevalence": summary.prevalence[name], "auc": summary.per_label[name],
                           "at_threshold": _operating_point_entry(scores.at_threshold(threshold), confidence)}
    report = {"per_label": per_label, "macro_auc": summary.macro_auc}
    if bootstrap:
        report["macro_auc_bootstrap"] = bootstrap_macro_auc(truth, probs, patient_ids(df), bootstrap,
                                                            confidence, seed)
    return report


def evaluate_predictions(df: pd.DataFrame, task, penalty=None, readings=None, threshold: float | None = None,
                         bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95,
                         subgroups: pd.DataFrame | None = None, meta: dict | None = None) -> dict:
    """Everything that applies to the task, as a JSON-safe dict (floats; "inf" for infinity; null for NaN).

    df: predictions table (image_id, label, patient_id, prob_<CLASS>..., predicted). penalty: a matrix in
    class order (default: the task's). readings: a DataFrame or file for core.readers.load_readings.
    threshold: score threshold for the binary views' fixed operating point (default 0.5). bootstrap:
    resamples (0 = none), by patient when patient ids exist, seeded by `seed`. subgroups: one column per subgroup
    column, aligned with df's rows (core.report.subgroups.subgroup_values): adds `subgroups` ({column: [row...]})
    and `subgroup_tests` on the view of the model's calls (its operating point's view in `meta`).
    """
    task = get_task(task)
    level = check_confidence(confidence)
    check_predictions(df, task)
    threshold = 0.5 if threshold is None else float(threshold)
    if int(bootstrap) < 0:
        raise InputError(f"bootstrap resamples must be 0 or more, got {bootstrap}")
    patients = patient_ids(df)
    report: dict = {
        "task": {"name": task.name, "kind": task.kind, "classes": list(task.classes)},
        "n_images": len(df),
        "n_patients": int(pd.Series(patients).nunique()) if patients is not None else None,
        "confidence": level,
        "threshold": threshold,
        "bootstrap": {"resamples": int(bootstrap), "seed": int(seed),
                      "unit": "patients" if patients is not None else "images"},
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
    if subgroups is not None and len(subgroups.columns):
        from core.report.subgroups import subgroup_tables, subgroup_view, subgroups_json

        view = subgroup_view(task, meta)
        tables = subgroup_tables(df, task, subgroups, view=view, penalty=matrix,
                                 bootstrap=int(bootstrap), seed=seed, confidence=level)
        report["subgroups"], report["subgroup_tests"] = subgroups_json(tables, view)
    return to_jsonable(report)


def _readers_section(readings, df: pd.DataFrame, task: Task, penalty: np.ndarray, confidence: float) -> dict:
    table = load_readings(readings, task, known_image_ids=df["image_id"].astype(str).tolist())
    return reader_summaries(table, with_predicted(df, task), task, penalty=penalty, confidence=confidence)
