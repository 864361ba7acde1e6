"""Multi-label (one yes/no per disease) AUROC summaries and ordinal-grade agreement."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.metrics.intervals import check_confidence
from core.metrics.kappa import KappaResult, kappa_from_table
from core.metrics.penalties import confusion_counts
from core.metrics.roc import AucEstimate, roc_auc


@dataclass(frozen=True)
class MultilabelSummary:
    labels: tuple[str, ...]
    per_label: dict[str, AucEstimate]
    prevalence: dict[str, float]
    macro_auc: float


def multilabel_metrics(y_true, probabilities, labels, confidence: float = 0.95) -> MultilabelSummary:
    """AUROC with DeLong interval for each label, and the macro AUROC over labels that have one.

    y_true: (n, k) 0/1 matrix; probabilities: (n, k) independent per-label probabilities.
    """
    level = check_confidence(confidence)
    truth = np.asarray(y_true, dtype=float)
    probs = np.asarray(probabilities, dtype=float)
    labels = tuple(str(x) for x in labels)
    if truth.shape != probs.shape or truth.ndim != 2 or truth.shape[1] != len(labels):
        raise InputError(f"truth {truth.shape} and probabilities {probs.shape} must both be (n, {len(labels)})")
    per_label, prevalence = {}, {}
    for j, name in enumerate(labels):
        per_label[name] = roc_auc(truth[:, j], probs[:, j], confidence=level)
        prevalence[name] = float(truth[:, j].mean()) if truth.shape[0] else math.nan
    values = np.array([a.value for a in per_label.values()])
    macro = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    return MultilabelSummary(labels, per_label, prevalence, macro)


@dataclass(frozen=True)
class OrdinalAgreement:
    """How far calls fall from the true grade."""

    quadratic_kappa: KappaResult
    linear_kappa: KappaResult
    exact_agreement: float
    within_one_grade: float
    mean_absolute_error: float
    adjacent_confusion: tuple[tuple[str, str, int], ...]  # (true grade, called grade, count), |i - j| == 1


def ordinal_agreement(y_true, y_pred, grades, confidence: float = 0.95) -> OrdinalAgreement:
    """Quadratic and linear weighted kappa over all `grades` (unused grades included), and grade distances."""
    grades = tuple(str(g) for g in grades)
    k = len(grades)
    truth = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    table = confusion_counts(truth, pred, k)
    distance = np.abs(truth - pred)
    n = truth.size
    adjacent = tuple((grades[i], grades[j], int(table[i, j]))
                     for i in range(k) for j in range(k) if abs(i - j) == 1)
    return OrdinalAgreement(
        quadratic_kappa=kappa_from_table(table, weights="quadratic", confidence=confidence, labels=grades),
        linear_kappa=kappa_from_table(table, weights="linear", confidence=confidence, labels=grades),
        exact_agreement=float((distance == 0).mean()) if n else math.nan,
        within_one_grade=float((distance <= 1).mean()) if n else math.nan,
        mean_absolute_error=float(distance.mean()) if n else math.nan,
        adjacent_confusion=adjacent,
    )
