"""ROC AUC with DeLong's variance (fast midrank algorithm of Sun & Xu 2014), and the paired DeLong test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.errors import InputError
from core.metrics.intervals import Interval, check_confidence, normal_quantile


@dataclass(frozen=True)
class AucEstimate(Interval):
    """AUC with its DeLong interval; `variance` is DeLong's variance of the AUC estimate."""

    variance: float = math.nan
    n_positive: int = 0
    n_negative: int = 0


@dataclass(frozen=True)
class DeLongTest:
    """Paired comparison of two correlated AUCs on the same cases (DeLong, DeLong & Clarke-Pearson 1988)."""

    z: float
    p_value: float
    difference: Interval
    auc_a: AucEstimate
    auc_b: AucEstimate
    correlation: float
    method: str = "DeLong paired test"
    reason: str = ""


def as_binary_truth(y_true, name: str = "y_true") -> np.ndarray:
    """Booleans from 0/1, True/False (or 0.0/1.0) labels; InputError for anything else."""
    arr = np.asarray(y_true)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    try:
        numeric = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must hold 0/1 (or True/False) labels") from None
    if not np.isin(numeric, (0.0, 1.0)).all():
        bad = numeric[~np.isin(numeric, (0.0, 1.0))][:3]
        raise InputError(f"{name} must hold 0/1 (or True/False) labels; found {bad.tolist()}")
    return numeric == 1.0


def as_scores(scores, n: int, name: str = "scores") -> np.ndarray:
    """Finite float scores of length n; InputError names the problem otherwise."""
    try:
        arr = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name} must be one score per case ({n}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} hold {int((~np.isfinite(arr)).sum())} missing or infinite values")
    return arr


def delong_components(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components for k score sets (rows of `scores`) on the same cases.

    Returns (auc[k], v10[k, m], v01[k, n]) for m positives and n negatives. Uses midranks, so ties
    count one half; three O(N log N) rankings per score set replace the O(m n) pair comparisons.
    """
    scores = np.atleast_2d(scores)
    positives, negatives = scores[:, truth], scores[:, ~truth]
    m, n = positives.shape[1], negatives.shape[1]
    rank_pos = stats.rankdata(positives, axis=1)
    rank_neg = stats.rankdata(negatives, axis=1)
    rank_all = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    # A positive's rank among all minus its rank among positives = negatives below it (ties 1/2).
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def delong_covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """k x k covariance of the AUC estimates: S10/m + S01/n (sample covariances, ddof=1)."""
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        # A sample variance needs two values: with a single positive or negative case it is unknown.
        return np.full((v10.shape[0],) * 2, np.nan)
    return np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n


_TOO_FEW = "the DeLong variance needs at least two positive and two negative cases"


def _empty_auc(m: int, n: int, level: float) -> AucEstimate:
    missing = "positive" if m == 0 else "negative"
    return AucEstimate(math.nan, math.nan, math.nan, "DeLong", n=m + n, confidence=level,
                       reason=f"no {missing} cases: AUC is undefined", n_positive=m, n_negative=n)


SEPARATION_METHOD = "exact one-sided (Clopper-Pearson bounds on sensitivity and specificity, Bonferroni)"


def separation_bound(m: int, n: int, level: float) -> float:
    """One-sided lower confidence bound for the AUC when the sample separates the classes completely (AUC 1).

    DeLong's variance is 0 there, so its interval is the point. A threshold between the groups has sensitivity
    m/m and specificity n/n; their exact (Clopper-Pearson) one-sided lower bounds at alpha/2 each are
    (alpha/2)^(1/m) and (alpha/2)^(1/n), and a monotone ROC curve through that point has area at least
    sensitivity x specificity, so AUC >= the product with confidence `level` (conservative).
    """
    alpha = 1.0 - level
    return float((alpha / 2) ** (1.0 / m) * (alpha / 2) ** (1.0 / n))


def _auc_estimate(auc: float, variance: float, m: int, n: int, level: float) -> AucEstimate:
    if variance == 0.0 and auc in (0.0, 1.0):
        bound = separation_bound(m, n, level)
        low, high = (bound, 1.0) if auc == 1.0 else (0.0, 1.0 - bound)
        return AucEstimate(float(auc), low, high, SEPARATION_METHOD, n=m + n, confidence=level,
                           reason="complete separation: DeLong's variance is 0, so the bound is one-sided exact",
                           variance=0.0, n_positive=m, n_negative=n)
    if not math.isfinite(variance):
        return AucEstimate(float(auc), math.nan, math.nan, "DeLong", n=m + n, confidence=level,
                           reason=_TOO_FEW, n_positive=m, n_negative=n)
    half = normal_quantile(level) * math.sqrt(max(variance, 0.0))
    # pROC clips the normal interval to the possible range of an AUC.
    return AucEstimate(float(auc), max(0.0, auc - half), min(1.0, auc + half), "DeLong", n=m + n,
                       confidence=level, variance=float(variance), n_positive=m, n_negative=n)


def roc_auc(y_true, scores, confidence: float = 0.95) -> AucEstimate:
    """Area under the ROC curve (higher score = more likely positive) with DeLong's variance and interval.

    Ties count one half (midranks); the interval is clipped to [0, 1]. No positives or no negatives
    gives NaN with a reason.
    """
    level = check_confidence(confidence)
    truth = as_binary_truth(y_true)
    values = as_scores(scores, truth.shape[0])
    m = int(truth.sum())
    n = truth.size - m
    if m == 0 or n == 0:
        return _empty_auc(m, n, level)
    auc, v10, v01 = delong_components(truth, values)
    variance = float(delong_covariance(v10, v01)[0, 0])
    return _auc_estimate(float(auc[0]), variance, m, n, level)


def delong_test(y_true, scores_a, scores_b, confidence: float = 0.95) -> DeLongTest:
    """DeLong's test for two correlated AUCs (two models, or a model and a reader, on the same cases).

    z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov_ab); p two-sided. `difference` is AUC_a - AUC_b
    with its normal interval. Identical score sets give z = 0 and p = 1.
    """
    level = check_confidence(confidence)
    truth = as_binary_truth(y_true)
    a = as_scores(scores_a, truth.shape[0], "scores_a")
    b = as_scores(scores_b, truth.shape[0], "scores_b")
    m = int(truth.sum())
    n = truth.size - m
    if m == 0 or n == 0:
        empty = _empty_auc(m, n, level)
        diff = Interval(math.nan, math.nan, math.nan, "DeLong", n=m + n, confidence=level, reason=empty.reason)
        return DeLongTest(math.nan, math.nan, diff, empty, empty, math.nan, reason=empty.reason)
    auc, v10, v01 = delong_components(truth, np.vstack([a, b]))
    cov = delong_covariance(v10, v01)
    auc_a = _auc_estimate(float(auc[0]), float(cov[0, 0]), m, n, level)
    auc_b = _auc_estimate(float(auc[1]), float(cov[1, 1]), m, n, level)
    delta = float(auc[0] - auc[1])
    var_delta = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    denom = math.sqrt(cov[0, 0] * cov[1, 1]) if np.isfinite(cov).all() else math.nan
    correlation = float(cov[0, 1] / denom) if denom > 0 else math.nan
    if np.array_equal(v10[0], v10[1]) and np.array_equal(v01[0], v01[1]):
        # The same curve (or one ranking the cases identically): the difference is exactly zero.
        reason = "the two score sets rank the cases identically: no difference to test"
        same = Interval(0.0, 0.0, 0.0, "DeLong", n=m + n, confidence=level, reason=reason)
        return DeLongTest(0.0, 1.0, same, auc_a, auc_b, correlation, reason=reason)
    if not math.isfinite(var_delta):
        unknown = Interval(delta, math.nan, math.nan, "DeLong", n=m + n, confidence=level, reason=_TOO_FEW)
        return DeLongTest(math.nan, math.nan, unknown, auc_a, auc_b, correlation, reason=_TOO_FEW)
    se = math.sqrt(max(var_delta, 0.0))
    reason = ""
    if se <= 1e-15:
        z, p = math.copysign(math.inf, delta) if delta else 0.0, 0.0 if delta else 1.0
        reason = "the difference has zero estimated variance"
    else:
        z = delta / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    half = normal_quantile(level) * se
    difference = Interval(delta, max(-1.0, delta - half), min(1.0, delta + half), "DeLong", n=m + n,
                          confidence=level)
    return DeLongTest(float(z), p, difference, auc_a, auc_b, correlation, reason=reason)
