"""Patient-level bootstrap intervals for a multi-class model's accuracy, weighted error and macro AUC."""

from __future__ import annotations

import time

import numpy as np

from core.metrics.bootstrap import (PatientSums, RankedScores, chunk_size, patient_groups, percentile_interval,
                                    resample_patient_counts)
from core.metrics.intervals import Interval, check_confidence
from core.metrics.multiclass import check_probabilities
from core.metrics.penalties import check_penalty_matrix, decide


def bootstrap_multiclass(y_true, probabilities, y_pred=None, penalty=None, patient_ids=None,
                         n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                         timings: dict | None = None, aucs: bool = True) -> dict[str, Interval]:
    """Bootstrap intervals (resampling patients when ids are given; seeded) for the summary statistics.

    Returns intervals for accuracy, balanced_accuracy, macro_auc and weighted_auc, and with a penalty
    matrix also weighted_error (of the given calls, default argmax) and weighted_error_min_penalty
    (calls that minimise the expected penalty). Replicates are the same as `bootstrap_ci`'s for the same
    data, ids and seed. `timings`, when given, receives seconds spent per part. aucs=False leaves out macro_auc
    and weighted_auc (the costly part); the other intervals are then exactly the same.
    """
    level = check_confidence(confidence)
    probs = check_probabilities(probabilities)
    truth = np.asarray(y_true, dtype=np.int64)
    n, k = probs.shape
    calls = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    correct = (calls == truth).astype(float)
    groups, n_groups = patient_groups(patient_ids, n)
    patients = PatientSums(groups, n_groups)

    per_image: dict[str, np.ndarray] = {"accuracy": correct}
    if penalty is not None:
        matrix = check_penalty_matrix(penalty, k)
        per_image["weighted_error"] = matrix[truth, calls]
        per_image["weighted_error_min_penalty"] = matrix[truth, decide(probs, "min_penalty", matrix)]
    onehot = np.eye(k)[truth]
    # One (patients x columns) table of per-patient sums: each replicate's means come from one matrix product.
    names = list(per_image)
    table = np.column_stack([patients.images, *(patients.sums(per_image[name]) for name in names),
                             patients.sums(onehot), patients.sums(onehot * correct[:, None])])
    named = {name: 1 + j for j, name in enumerate(names)}
    case_columns = slice(1 + len(names), 1 + len(names) + k)
    hit_columns = slice(1 + len(names) + k, None)
    ranked = [RankedScores(truth == c, probs[:, c], groups) for c in range(k)] if aucs else []

    def replicate(counts: np.ndarray, spent: dict, clock: float) -> tuple[dict[str, np.ndarray], float]:
        sums = counts.astype(float) @ table
        out = {name: _ratio(sums[:, column], sums[:, 0]) for name, column in named.items()}
        out["balanced_accuracy"] = _mean_recall(sums[:, case_columns], sums[:, hit_columns])
        clock = _lap(spent, "accuracy_and_weighted_error", clock)
        if ranked:
            per_class = np.column_stack([r.auc(counts) for r in ranked])
            out["macro_auc"], out["weighted_auc"] = _auc_summaries(per_class, sums[:, case_columns])
        return out, _lap(spent, "auc", clock)

    spent = {"resampling": 0.0, "accuracy_and_weighted_error": 0.0, "auc": 0.0}
    # Point estimates: the same formulas with every patient drawn once.
    point, _ = replicate(np.ones((1, n_groups), dtype=np.int32), dict(spent), time.perf_counter())
    reps: dict[str, list[np.ndarray]] = {name: [] for name in point}
    clock = time.perf_counter()
    for counts in resample_patient_counts(n_groups, n_resamples, seed, chunk_size(n)):
        clock = _lap(spent, "resampling", clock)
        values, clock = replicate(counts, spent, clock)
        for name, column in values.items():
            reps[name].append(column)
    if timings is not None:
        timings.update(spent)
    unit = "patients" if patient_ids is not None else "images"
    return {name: percentile_interval(float(point[name][0]), np.concatenate(reps[name]), level, n, f"by {unit}")
            for name in point}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def _mean_recall(cases: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Balanced accuracy per replicate: mean recall over the classes present in it."""
    present = cases > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.where(present, cases, 1.0), 0.0)
        return recall.sum(axis=1) / present.sum(axis=1)


def _auc_summaries(aucs: np.ndarray, cases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro and case-weighted mean AUC per replicate over the classes that have an AUC in it."""
    valid = np.isfinite(aucs)
    values = np.where(valid, aucs, 0.0)
    weights = np.where(valid, cases, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return values.sum(axis=1) / valid.sum(axis=1), (values * weights).sum(axis=1) / weights.sum(axis=1)


def _lap(spent: dict, name: str, since: float) -> float:
    now = time.perf_counter()
    spent[name] += now - since
    return now


def bootstrap_macro_auc(truth_matrix, probabilities, patient_ids=None, n_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> Interval:
    """Bootstrap interval of the macro AUROC over labels (multi-label: one 0/1 column per label)."""
    level = check_confidence(confidence)
    truth = np.asarray(truth_matrix, dtype=float)
    probs = check_probabilities(probabilities, truth.shape[1] if truth.ndim == 2 else None, rows_sum_to_one=False)
    n, k = probs.shape
    groups, n_groups = patient_groups(patient_ids, n)
    ranked = [RankedScores(truth[:, j] == 1, probs[:, j], groups) for j in range(k)]

    def macro(counts: np.ndarray) -> np.ndarray:
        aucs = np.column_stack([r.auc(counts) for r in ranked])
        valid = np.isfinite(aucs)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(valid, aucs, 0.0).sum(axis=1) / valid.sum(axis=1)

    value = float(macro(np.ones((1, n_groups), dtype=np.int32))[0])
    reps = [macro(counts) for counts in resample_patient_counts(n_groups, n_resamples, seed, chunk_size(n))]
    unit = "patients" if patient_ids is not None else "images"
    return percentile_interval(value, np.concatenate(reps), level, n, f"by {unit}")
