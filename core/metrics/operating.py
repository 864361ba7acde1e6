"""Operating points on one binary score: a cached ROC so that moving a threshold costs O(log n)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from core.errors import InputError
from core.metrics.diagnostic import DiagnosticMetrics, diagnostic_metrics
from core.metrics.roc import AucEstimate, as_binary_truth, as_scores, roc_auc

# Counts are integers; targets like 0.95 * 20 = 19.000000000000004 must not round up to 20.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold (score >= threshold is called positive) and the 2x2 counts it gives."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    rule: str = "threshold"

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    def metrics(self, confidence: float = 0.95, ci: str = "wilson", lr_ci: str = "log") -> DiagnosticMetrics:
        """Sensitivity, specificity, PPV, NPV, accuracy and LRs with intervals at this threshold."""
        return diagnostic_metrics(self.tp, self.fp, self.fn, self.tn, confidence=confidence, ci=ci, lr_ci=lr_ci)


@dataclass(frozen=True)
class RocCurve:
    """ROC curve arrays for plotting: thresholds descending, fpr and tpr ascending."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


class BinaryScores:
    """Truth and scores for one binary question, sorted once; every later query is a binary search.

    Build it once per (predictions table, binary view); the dashboard's threshold slider then calls
    `at_threshold`, `threshold_for_sensitivity` etc. without touching the n cases again.
    """

    def __init__(self, y_true, scores):
        self.truth = as_binary_truth(y_true)
        self.scores = as_scores(scores, self.truth.shape[0])
        self.n_positive = int(self.truth.sum())
        self.n_negative = int(self.truth.size - self.n_positive)
        self._positive_sorted = np.sort(self.scores[self.truth])
        self._negative_sorted = np.sort(self.scores[~self.truth])
        if self.n_positive and self.n_negative:
            fpr, tpr, thresholds = roc_curve(self.truth, self.scores, drop_intermediate=False)
            self._tps = np.rint(tpr * self.n_positive).astype(np.int64)
            self._fps = np.rint(fpr * self.n_negative).astype(np.int64)
        else:
            # One class only: the curve is undefined, but counts at a threshold still are.
            thresholds = np.concatenate([[np.inf], np.unique(self.scores)[::-1]])
            self._tps = self.n_positive - np.searchsorted(self._positive_sorted, thresholds, side="left")
            self._fps = self.n_negative - np.searchsorted(self._negative_sorted, thresholds, side="left")
        self._thresholds = thresholds
        self._auc_cache: dict[float, AucEstimate] = {}

    def __len__(self) -> int:
        return self.truth.size

    def auc(self, confidence: float = 0.95) -> AucEstimate:
        """AUC with DeLong interval (computed once per confidence level)."""
        if confidence not in self._auc_cache:
            self._auc_cache[confidence] = roc_auc(self.truth, self.scores, confidence=confidence)
        return self._auc_cache[confidence]

    def curve(self, drop_intermediate: bool = True) -> RocCurve:
        """The ROC curve; by default without collinear points (enough to draw it)."""
        if not (self.n_positive and self.n_negative):
            raise InputError("an ROC curve needs both positive and negative cases")
        tpr = self._tps / self.n_positive
        fpr = self._fps / self.n_negative
        if drop_intermediate and tpr.size > 2:
            # Keep the corners: points where the curve changes direction.
            keep = np.ones(tpr.size, dtype=bool)
            keep[1:-1] = np.logical_or(np.diff(fpr, 2) != 0, np.diff(tpr, 2) != 0)
            return RocCurve(fpr[keep], tpr[keep], self._thresholds[keep])
        return RocCurve(fpr, tpr, self._thresholds.copy())

    def _point(self, index: int, rule: str) -> OperatingPoint:
        tp, fp = int(self._tps[index]), int(self._fps[index])
        return OperatingPoint(float(self._thresholds[index]), tp, fp, self.n_positive - tp,
                              self.n_negative - fp, rule)

    def at_threshold(self, threshold: float) -> OperatingPoint:
        """Counts when cases with score >= threshold are called positive."""
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise InputError(f"threshold must be a number, got {threshold!r}") from None
        if math.isnan(t):
            raise InputError("threshold must be a number, got NaN")
        tp = self.n_positive - int(np.searchsorted(self._positive_sorted, t, side="left"))
        fp = self.n_negative - int(np.searchsorted(self._negative_sorted, t, side="left"))
        return OperatingPoint(t, tp, fp, self.n_positive - tp, self.n_negative - fp, "threshold")

    def threshold_for_sensitivity(self, target: float) -> OperatingPoint:
        """The highest threshold whose sensitivity reaches `target` (so specificity is as high as it can be)."""
        target = _check_target(target, "sensitivity")
        if self.n_positive == 0:
            raise InputError("no positive cases: cannot aim for a sensitivity")
        needed = math.ceil(target * self.n_positive - _TOLERANCE)
        index = int(np.searchsorted(self._tps, needed, side="left"))
        return self._point(min(index, self._tps.size - 1), f"sensitivity >= {target:g}")

    def threshold_for_specificity(self, target: float) -> OperatingPoint:
        """The lowest threshold whose specificity still reaches `target` (so sensitivity is as high as it can be)."""
        target = _check_target(target, "specificity")
        if self.n_negative == 0:
            raise InputError("no negative cases: cannot aim for a specificity")
        allowed = math.floor((1.0 - target) * self.n_negative + _TOLERANCE)
        index = int(np.searchsorted(self._fps, allowed, side="right")) - 1
        return self._point(max(index, 0), f"specificity >= {target:g}")

    def youden(self) -> OperatingPoint:
        """The threshold maximising Youden's J = sensitivity + specificity - 1 (the highest such on ties)."""
        if not (self.n_positive and self.n_negative):
            raise InputError("Youden's J needs both positive and negative cases")
        j = self._tps / self.n_positive - self._fps / self.n_negative
        return self._point(int(np.argmax(j)), "Youden's J")


def _check_target(target: float, what: str) -> float:
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise InputError(f"target {what} must be a number between 0 and 1, got {target!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"target {what} must lie between 0 and 1, got {target!r}")
    return value
