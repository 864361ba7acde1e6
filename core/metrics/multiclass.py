"""Multi-class summaries: confusion matrices, one-vs-rest ROC/AUC and per-class rates, accuracy, cross-entropy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import InputError
from core.metrics.diagnostic import DiagnosticMetrics, diagnostic_metrics
from core.metrics.intervals import Interval, check_confidence, proportion_ci
from core.metrics.penalties import confusion_counts
from core.metrics.roc import AucEstimate, roc_auc

# Probabilities written as float32 sum to 1 only within a few 1e-7; allow generous rounding.
_ROW_SUM_TOLERANCE = 1e-3
# Clip log(0) as scikit-learn's log_loss does, so one confident mistake gives a large, finite loss.
_LOG_FLOOR = 1e-15


def class_indices(labels, classes) -> np.ndarray:
    """Map class names to their index in `classes`; InputError lists any unknown names."""
    classes = [str(c) for c in classes]
    values = pd.Series(np.asarray(labels)).astype(str)
    codes = pd.Index(classes).get_indexer(values).astype(np.int64)
    if (codes < 0).any():
        unknown = sorted(set(values[codes < 0].tolist()))
        raise InputError(f"labels {unknown[:5]} are not classes of this task {classes}")
    return codes


def check_probabilities(probabilities, k: int | None = None, rows_sum_to_one: bool = True) -> np.ndarray:
    """A finite (n, k) float matrix of probabilities in [0, 1] (rows summing to 1 for single-label tasks)."""
    probs = np.asarray(probabilities, dtype=float)
    if probs.ndim != 2 or (k is not None and probs.shape[1] != k):
        want = f"(n, {k})" if k is not None else "(n, classes)"
        raise InputError(f"probabilities must have shape {want}, got {probs.shape}")
    if not np.isfinite(probs).all():
        raise InputError(f"probabilities hold {int((~np.isfinite(probs)).sum())} missing or infinite values")
    if (probs < -1e-9).any() or (probs > 1 + 1e-9).any():
        raise InputError("probabilities must lie between 0 and 1")
    if rows_sum_to_one and probs.size:
        sums = probs.sum(axis=1)
        off = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
        if off.any():
            row = int(np.argmax(off))
            raise InputError(f"class probabilities must sum to 1 per image; row {row} sums to {sums[row]:.4f} "
                             f"({int(off.sum())} rows off)")
    return probs


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts with rows = true class and columns = predicted class, in `classes` order."""

    classes: tuple[str, ...]
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def row_normalised(self) -> np.ndarray:
        """Each row divided by its total: the share of each true class given each call (recall on the diagonal)."""
        totals = self.counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, self.counts / np.where(totals > 0, totals, 1), np.nan)

    @property
    def column_normalised(self) -> np.ndarray:
        """Each column divided by its total (precision on the diagonal)."""
        totals = self.counts.sum(axis=0, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, self.counts / np.where(totals > 0, totals, 1), np.nan)

    def one_vs_rest(self, index: int) -> tuple[int, int, int, int]:
        """(tp, fp, fn, tn) for class `index` against all others."""
        tp = int(self.counts[index, index])
        fn = int(self.counts[index].sum() - tp)
        fp = int(self.counts[:, index].sum() - tp)
        return tp, fp, fn, self.n - tp - fp - fn


def confusion_matrix(y_true, y_pred, classes) -> ConfusionMatrix:
    """Confusion matrix from class indices (or class names, mapped through `classes`)."""
    classes = tuple(str(c) for c in classes)
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if truth.dtype.kind not in "iu":
        truth = class_indices(truth, classes)
    if pred.dtype.kind not in "iu":
        pred = class_indices(pred, classes)
    return ConfusionMatrix(classes, confusion_counts(truth, pred, len(classes)))


@dataclass(frozen=True)
class ClassResult:
    """One class against the rest: AUC of its probability, and the 2x2 rates of calling it."""

    name: str
    n_cases: int
    auc: AucEstimate
    rates: DiagnosticMetrics


@dataclass(frozen=True)
class MulticlassSummary:
    classes: tuple[str, ...]
    confusion: ConfusionMatrix
    per_class: tuple[ClassResult, ...]
    accuracy: Interval
    balanced_accuracy: float
    macro_auc: float
    weighted_auc: float
    cross_entropy: float

    @property
    def n(self) -> int:
        return self.confusion.n


def cross_entropy(y_true, probabilities) -> float:
    """Mean negative log probability given to the true class (natural log; log 0 clipped at 1e-15)."""
    probs = np.asarray(probabilities, dtype=float)
    truth = np.asarray(y_true, dtype=np.int64)
    if truth.size == 0:
        return math.nan
    given = probs[np.arange(truth.size), truth]
    return float(-np.log(np.clip(given, _LOG_FLOOR, 1.0)).mean())


def balanced_accuracy(confusion) -> float:
    """Mean recall over the classes present in the truth (scikit-learn's definition)."""
    counts = np.asarray(confusion.counts if isinstance(confusion, ConfusionMatrix) else confusion, dtype=float)
    totals = counts.sum(axis=1)
    present = totals > 0
    return float((np.diag(counts)[present] / totals[present]).mean()) if present.any() else math.nan


def macro_and_weighted_auc(aucs, cases) -> tuple[float, float]:
    """Unweighted mean and prevalence-weighted mean of per-class AUCs (classes without an AUC left out)."""
    values = np.array([a.value if isinstance(a, Interval) else a for a in aucs], dtype=float)
    weights = np.asarray(cases, dtype=float)
    ok = np.isfinite(values)
    if not ok.any():
        return math.nan, math.nan
    return float(values[ok].mean()), float(np.average(values[ok], weights=weights[ok]))


def multiclass_metrics(y_true, probabilities, classes, y_pred=None, confidence: float = 0.95,
                       ci: str = "wilson", lr_ci: str = "log") -> MulticlassSummary:
    """Everything per class and overall for a single-label multi-class model.

    y_true: class indices or names. y_pred: the calls (default: the most probable class). AUCs are
    one-vs-rest on each class's probability with DeLong intervals; per-class rates are for calling
    that class vs any other, with `ci` intervals and `lr_ci` likelihood-ratio intervals.
    """
    level = check_confidence(confidence)
    classes = tuple(str(c) for c in classes)
    k = len(classes)
    probs = check_probabilities(probabilities, k)
    truth = np.asarray(y_true)
    truth = class_indices(truth, classes) if truth.dtype.kind not in "iu" else truth.astype(np.int64)
    if truth.shape[0] != probs.shape[0]:
        raise InputError(f"{truth.shape[0]} labels but {probs.shape[0]} rows of probabilities")
    if y_pred is None:
        pred = probs.argmax(axis=1)
    else:
        pred = np.asarray(y_pred)
        pred = class_indices(pred, classes) if pred.dtype.kind not in "iu" else pred.astype(np.int64)
    confusion = ConfusionMatrix(classes, confusion_counts(truth, pred, k))
    per_class = []
    for index, name in enumerate(classes):
        auc = roc_auc(truth == index, probs[:, index], confidence=level)
        rates = diagnostic_metrics(*confusion.one_vs_rest(index), confidence=level, ci=ci, lr_ci=lr_ci)
        per_class.append(ClassResult(name, int((truth == index).sum()), auc, rates))
    macro, weighted = macro_and_weighted_auc([c.auc for c in per_class], [c.n_cases for c in per_class])
    correct = int(np.trace(confusion.counts))
    return MulticlassSummary(
        classes=classes,
        confusion=confusion,
        per_class=tuple(per_class),
        accuracy=proportion_ci(correct, confusion.n, method=ci, confidence=level),
        balanced_accuracy=balanced_accuracy(confusion),
        macro_auc=macro,
        weighted_auc=weighted,
        cross_entropy=cross_entropy(truth, probs),
    )


@dataclass(frozen=True)
class ReferralConfusion:
    """The calls made (a confusion matrix over the images not referred) and, per true class, the images referred
    to a reader: the confusion matrix with a third outcome."""

    calls: ConfusionMatrix
    referred: np.ndarray  # images referred, per true class

    @property
    def n(self) -> int:
        return self.calls.n + int(self.referred.sum())

    @property
    def n_referred(self) -> int:
        return int(self.referred.sum())

    def table(self) -> np.ndarray:
        """k x (k + 1) counts: the calls, then a column of referrals."""
        return np.column_stack([self.calls.counts, self.referred])


def referral_confusion(y_true, y_pred, referred, classes) -> ReferralConfusion:
    """Confusion of the calls made, plus the referred images per true class (referred None: nothing referred)."""
    classes = tuple(str(c) for c in classes)
    truth = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    mask = np.zeros(truth.shape, dtype=bool) if referred is None else np.asarray(referred, dtype=bool)
    if mask.shape != truth.shape:
        raise InputError(f"referred mask and true classes differ in length: {mask.shape} vs {truth.shape}")
    k = len(classes)
    calls = ConfusionMatrix(classes, confusion_counts(truth[~mask], pred[~mask], k))
    return ReferralConfusion(calls, np.bincount(truth[mask], minlength=k).astype(np.int64))
