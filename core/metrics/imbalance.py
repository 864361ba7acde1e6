"""Class imbalance: prevalence per split, predictive values at a chosen prevalence, balanced accuracy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.metrics.diagnostic import DiagnosticMetrics
from core.metrics.intervals import Interval, check_open_fraction
from core.metrics.multiclass import balanced_accuracy  # noqa: F401  (re-exported: imbalance view)


def prevalence_by_split(labels, splits, classes) -> pd.DataFrame:
    """Share of each class within each split (rows = split, columns = class, plus `n` images)."""
    frame = pd.DataFrame({"label": np.asarray(labels).astype(str),
                          "split": pd.Series(np.asarray(splits, dtype=object)).fillna("(none)").astype(str)})
    counts = pd.crosstab(frame["split"], frame["label"]).reindex(columns=list(classes), fill_value=0)
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
    shares["n"] = counts.sum(axis=1)
    return shares


def _ppv(prevalence: float, lr_positive: float) -> float:
    if math.isnan(lr_positive):
        return math.nan
    if math.isinf(lr_positive):
        return 1.0
    odds = prevalence / (1.0 - prevalence) * lr_positive
    return odds / (1.0 + odds)


def _npv(prevalence: float, lr_negative: float) -> float:
    if math.isnan(lr_negative):
        return math.nan
    if math.isinf(lr_negative):
        return 0.0
    # Post-test odds of disease after a negative call, turned into the probability of no disease.
    odds = prevalence / (1.0 - prevalence) * lr_negative
    return 1.0 / (1.0 + odds)


def predictive_values_at_prevalence(metrics: DiagnosticMetrics, prevalence: float) -> tuple[Interval, Interval]:
    """PPV and NPV if the same test were used where the condition has the given prevalence (Bayes' theorem).

    PPV = p*LR+ / (p*LR+ + 1 - p), NPV = (1 - p) / (1 - p + p*LR-). Both are monotone in the likelihood
    ratio, so the interval is the LR interval carried through the same formula.
    """
    p = check_open_fraction(prevalence, "prevalence")
    lr_pos, lr_neg = metrics.lr_positive, metrics.lr_negative
    method_pos = f"Bayes at prevalence {p:g} from LR+ ({lr_pos.method})"
    method_neg = f"Bayes at prevalence {p:g} from LR- ({lr_neg.method})"
    ppv = Interval(_ppv(p, lr_pos.value), _ppv(p, lr_pos.low), _ppv(p, lr_pos.high), method_pos,
                   n=lr_pos.n, confidence=lr_pos.confidence, reason=lr_pos.reason)
    # NPV falls as LR- rises, so the bounds swap.
    npv = Interval(_npv(p, lr_neg.value), _npv(p, lr_neg.high), _npv(p, lr_neg.low), method_neg,
                   n=lr_neg.n, confidence=lr_neg.confidence, reason=lr_neg.reason)
    return ppv, npv
