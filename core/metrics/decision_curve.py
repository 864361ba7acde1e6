"""Decision-curve analysis: net benefit of acting on a risk at each threshold (Vickers & Elkin 2006)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.errors import InputError
from core.metrics.intervals import check_open_fraction
from core.metrics.roc import as_binary_truth, as_scores

DECISION_CURVE_COLUMNS = ("threshold", "net_benefit", "net_benefit_all", "net_benefit_none",
                          "net_interventions_avoided", "tp_rate", "fp_rate")


def _check_unit_interval(values: np.ndarray, name: str) -> np.ndarray:
    if ((values < 0) | (values > 1)).any():
        bad = values[(values < 0) | (values > 1)][:3]
        raise InputError(f"{name} must lie between 0 and 1; found {bad.tolist()}")
    return values


def positive_at_threshold(risk: np.ndarray, threshold: float) -> np.ndarray:
    """Positive iff risk >= threshold, except that, as dcurves does, a risk of exactly 0 is never
    positive and exactly 1 always is: a 0/1 call (a reader's yes/no) keeps its meaning at every threshold."""
    return ((risk >= threshold) & (risk != 0.0)) | (risk == 1.0)


def decision_curve(y_true, risk, thresholds, *, harm: float = 0.0, prevalence: float | None = None) -> pd.DataFrame:
    """Net benefit of the model, of treating all and of treating none, per threshold probability.

    net benefit = TP rate - FP rate * t / (1 - t) - harm; with `prevalence` (case-control samples,
    where the sample's own prevalence is meaningless) TP rate = sensitivity * prevalence and FP rate
    = (1 - specificity) * (1 - prevalence). Net interventions avoided (per patient) =
    (NB_model - NB_all) / (t / (1 - t)). A threshold of 0 or 1 gives infinities or NaN where the odds
    do, as in dcurves.
    """
    truth = as_binary_truth(y_true)
    risks = _check_unit_interval(as_scores(risk, truth.shape[0], "risk"), "risk")
    cuts = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if cuts.ndim != 1 or cuts.size == 0 or not np.isfinite(cuts).all():
        raise InputError("thresholds must be a non-empty list of numbers between 0 and 1")
    _check_unit_interval(cuts, "thresholds")
    harm = float(harm)
    if not math.isfinite(harm) or harm < 0:
        raise InputError(f"harm must be a non-negative number (the cost of the test itself), got {harm!r}")
    n = truth.size
    n_pos = int(truth.sum())
    if prevalence is None:
        if n == 0:
            raise InputError("decision curve needs at least one case")
        prev = n_pos / n
    else:
        prev = check_open_fraction(prevalence, "prevalence", "0.15")
        if n_pos == 0 or n_pos == n:
            raise InputError("with a given prevalence the sample needs both diseased and non-diseased cases")
    rows = []
    for t in cuts:
        positive = positive_at_threshold(risks, t)
        if prevalence is None:
            tp_rate = float((positive & truth).sum()) / n
            fp_rate = float((positive & ~truth).sum()) / n
        else:
            tp_rate = float(positive[truth].mean()) * prev
            fp_rate = float(positive[~truth].mean()) * (1.0 - prev)
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.float64(t) / np.float64(1.0 - t)
            net_benefit = tp_rate - fp_rate * odds - harm
            net_all = prev - (1.0 - prev) * odds
            avoided = (net_benefit - net_all) / odds
        rows.append((float(t), float(net_benefit), float(net_all), 0.0, float(avoided), tp_rate, fp_rate))
    return pd.DataFrame(rows, columns=list(DECISION_CURVE_COLUMNS))


def penalty_threshold(penalty, classes, positive) -> tuple[float, float] | None:
    """Risk thresholds implied by a penalty matrix for a binary view: t = cost(FP) / (cost(FP) + cost(FN)).

    A false positive is a true class outside `positive` called as one inside it, a false negative the
    reverse. When those penalties differ by class the threshold is a range: (cheapest false positive
    against the costliest miss, costliest false positive against the cheapest miss); equal ends when they
    do not. None when a block is empty or free (no trade-off to balance).
    """
    matrix = np.asarray(penalty, dtype=float)
    names = [str(c) for c in classes]
    if matrix.shape != (len(names), len(names)):
        raise InputError(f"penalty matrix must be {len(names)} x {len(names)} for classes {names}")
    inside = np.array([name in {str(p) for p in positive} for name in names])
    false_positive = matrix[np.ix_(~inside, inside)]
    false_negative = matrix[np.ix_(inside, ~inside)]
    if false_positive.size == 0 or false_negative.size == 0:
        return None
    fp_low, fp_high = float(false_positive.min()), float(false_positive.max())
    fn_low, fn_high = float(false_negative.min()), float(false_negative.max())
    if fp_low <= 0 or fn_low <= 0:
        return None
    return fp_low / (fp_low + fn_high), fp_high / (fp_high + fn_low)
