"""Diagnostic accuracy from a 2x2 table: sensitivity, specificity, predictive values, likelihood ratios."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.metrics.intervals import PROPORTION_METHODS, Interval, check_count, check_confidence, proportion_ci
from core.metrics.likelihood_ratios import LR_METHODS, ratio_ci


@dataclass(frozen=True)
class DiagnosticMetrics:
    """Everything a clinician reads off one 2x2 table, each rate with its interval."""

    tp: int
    fp: int
    fn: int
    tn: int
    sensitivity: Interval
    specificity: Interval
    ppv: Interval
    npv: Interval
    accuracy: Interval
    lr_positive: Interval
    lr_negative: Interval
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def prevalence(self) -> float:
        """Share of cases with the condition in this table (NaN for an empty table)."""
        return (self.tp + self.fn) / self.n if self.n else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        return (self.sensitivity.value + self.specificity.value) / 2.0

    @property
    def youden_j(self) -> float:
        return self.sensitivity.value + self.specificity.value - 1.0

    def counts(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def rates(self) -> dict[str, Interval]:
        """The named interval estimates in reading order (drives tables and JSON)."""
        return {
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
            "accuracy": self.accuracy,
            "lr_positive": self.lr_positive,
            "lr_negative": self.lr_negative,
        }


def _rate(x: int, n: int, method: str, confidence: float, what: str) -> Interval:
    result = proportion_ci(x, n, method=method, confidence=confidence)
    if n == 0:
        # Say which denominator was empty, in the clinic's words.
        return Interval(result.value, result.low, result.high, result.method, n=0,
                        confidence=result.confidence, reason=f"{what}: no cases to compute it from")
    return result


def diagnostic_metrics(tp: int, fp: int, fn: int, tn: int, confidence: float = 0.95, ci: str = "wilson",
                       lr_ci: str = "log") -> DiagnosticMetrics:
    """Sensitivity, specificity, PPV, NPV, accuracy (proportion intervals) and LR+/LR- from a 2x2 table.

    ci: "wilson" or "exact" (Clopper-Pearson) for the proportions.
    lr_ci: "log" (Simel, Samsa & Matchar 1991), "koopman" (score interval, Koopman 1984) or
    "adjusted_log" (0.5 added to each count and total, Fagerland et al. 2015).
    LR+ = sens / (1 - spec), LR- = (1 - sens) / spec.
    Zero cells give 0, infinity or NaN with a `reason`, never an exception.
    """
    tp, fp = check_count(tp, "tp (true positives)"), check_count(fp, "fp (false positives)")
    fn, tn = check_count(fn, "fn (false negatives)"), check_count(tn, "tn (true negatives)")
    level = check_confidence(confidence)
    if ci not in PROPORTION_METHODS:
        raise InputError(f"ci must be one of {PROPORTION_METHODS}, got {ci!r}")
    if lr_ci not in LR_METHODS:
        raise InputError(f"lr_ci must be one of {LR_METHODS}, got {lr_ci!r}")
    diseased, healthy = tp + fn, fp + tn
    return DiagnosticMetrics(
        tp=tp, fp=fp, fn=fn, tn=tn,
        sensitivity=_rate(tp, diseased, ci, level, "sensitivity (no cases with the condition)"),
        specificity=_rate(tn, healthy, ci, level, "specificity (no cases without the condition)"),
        ppv=_rate(tp, tp + fp, ci, level, "PPV (no positive calls)"),
        npv=_rate(tn, tn + fn, ci, level, "NPV (no negative calls)"),
        accuracy=_rate(tp + tn, tp + fp + fn + tn, ci, level, "accuracy (empty table)"),
        # LR+ compares P(test+ | disease) with P(test+ | no disease); LR- likewise for test-.
        lr_positive=ratio_ci(tp, diseased, fp, healthy, method=lr_ci, confidence=level, name="LR+",
                             parts=("sensitivity", "the false-positive rate (1 - specificity)")),
        lr_negative=ratio_ci(fn, diseased, tn, healthy, method=lr_ci, confidence=level, name="LR-",
                             parts=("the false-negative rate (1 - sensitivity)", "specificity")),
        confidence=level,
    )


def counts_from_labels(y_true, y_pred) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) from two boolean-like arrays (1/True = condition present / test positive)."""
    truth = np.asarray(y_true).astype(bool)
    called = np.asarray(y_pred).astype(bool)
    if truth.shape != called.shape:
        raise InputError(f"truth and calls differ in length: {truth.shape[0]} vs {called.shape[0]}")
    tp = int(np.count_nonzero(truth & called))
    fp = int(np.count_nonzero(~truth & called))
    fn = int(np.count_nonzero(truth & ~called))
    return tp, fp, fn, int(truth.size - tp - fp - fn)
