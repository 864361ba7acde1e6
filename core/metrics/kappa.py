"""Cohen's kappa (unweighted, linear or quadratic weights) with standard errors, interval and test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa as _statsmodels_kappa

from core.errors import InputError
from core.metrics.intervals import Interval, check_confidence, normal_quantile

KAPPA_WEIGHTS = (None, "linear", "quadratic")


@dataclass(frozen=True)
class KappaResult:
    """Kappa with its large-sample SE (for the interval) and its SE under H0: kappa = 0 (for z and p)."""

    kappa: Interval
    se: float
    se_null: float
    z: float
    p_value: float
    weights: str | None
    labels: tuple
    table: np.ndarray
    reason: str = ""

    @property
    def value(self) -> float:
        return self.kappa.value


def agreement_table(a, b, labels=None) -> tuple[np.ndarray, tuple]:
    """Square table of counts: rows = rater a's category, columns = rater b's, in `labels` order.

    Without `labels`, the sorted union of the categories either rater used. With `labels`, categories
    nobody used still get a row and column (so weights keep their meaning, e.g. DR grades 0..4).
    """
    first, second = np.asarray(a), np.asarray(b)
    if first.ndim != 1 or first.shape != second.shape:
        raise InputError(f"the two sets of ratings must be 1-D and equally long: {first.shape} vs {second.shape}")
    if first.size == 0:
        raise InputError("no paired ratings to compare")
    if labels is None:
        categories = tuple(np.unique(np.concatenate([first, second])).tolist())
    else:
        categories = tuple(labels)
        if len(set(categories)) != len(categories):
            raise InputError(f"labels repeat: {list(categories)}")
    index = {cat: i for i, cat in enumerate(categories)}
    try:
        rows = np.fromiter((index[v] for v in first.tolist()), dtype=np.int64, count=first.size)
        cols = np.fromiter((index[v] for v in second.tolist()), dtype=np.int64, count=second.size)
    except KeyError as exc:
        raise InputError(f"rating {exc.args[0]!r} is not one of the labels {list(categories)}") from None
    k = len(categories)
    table = np.bincount(rows * k + cols, minlength=k * k).reshape(k, k)
    return table, categories


def cohen_kappa(a, b, weights: str | None = None, labels=None, confidence: float = 0.95) -> KappaResult:
    """Cohen's kappa between two raters (or a model and a reader) on the same cases.

    weights: None (unweighted), "linear" or "quadratic" disagreement weights over the label order.
    SEs follow Fleiss, Cohen & Everitt (1969), computed by statsmodels: the large-sample SE gives the
    interval kappa +/- z*SE; the SE under H0 gives z = kappa / SE0 and a two-sided p (as irr::kappa2).
    """
    level = check_confidence(confidence)
    if weights not in KAPPA_WEIGHTS:
        raise InputError(f"kappa weights must be one of {KAPPA_WEIGHTS}, got {weights!r}")
    table, categories = agreement_table(a, b, labels)
    return kappa_from_table(table, weights=weights, confidence=level, labels=categories)


def kappa_from_table(table, weights: str | None = None, confidence: float = 0.95, labels=None) -> KappaResult:
    """Kappa from a square agreement table (rows = rater a, columns = rater b)."""
    level = check_confidence(confidence)
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise InputError(f"agreement table must be square, got shape {counts.shape}")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise InputError("agreement table must hold non-negative counts")
    k = counts.shape[0]
    labels = tuple(labels) if labels is not None else tuple(range(k))
    method = {None: "Cohen", "linear": "Cohen, linear weights", "quadratic": "Cohen, quadratic weights"}[weights]
    n = int(counts.sum())
    chance = (counts.sum(axis=1) / max(n, 1)) @ (counts.sum(axis=0) / max(n, 1)) if n else 1.0
    if n == 0 or k < 2 or math.isclose(float(chance), 1.0):
        reason = "both raters used one and the same category for every case: kappa is undefined"
        if n == 0:
            reason = "no paired ratings"
        nan = Interval(math.nan, math.nan, math.nan, method, n=n, confidence=level, reason=reason)
        return KappaResult(nan, math.nan, math.nan, math.nan, math.nan, weights, labels, counts.astype(int), reason)
    # Tiny tables can give a zero or negative variance estimate; handled below, so keep numpy quiet.
    with np.errstate(all="ignore"):
        if weights is None:
            result = _statsmodels_kappa(counts)
        else:
            # Scores 0..k-1 along the label order; statsmodels turns them into |i-j| or (i-j)^2 weights.
            result = _statsmodels_kappa(counts, weights=np.arange(k, dtype=float), wt=weights)
    kappa = float(result.kappa)
    se = math.sqrt(max(float(result.var_kappa), 0.0))
    se_null = math.sqrt(max(float(result.var_kappa0), 0.0))
    half = normal_quantile(level) * se
    # One rater with a single category: kappa is fixed by the margins (statsmodels' variance is rounding noise).
    one_category = (counts.sum(axis=1) > 0).sum() == 1 or (counts.sum(axis=0) > 0).sum() == 1
    if se > 0 and not one_category:
        interval = Interval(kappa, max(-1.0, kappa - half), min(1.0, kappa + half), method, n=n,
                            confidence=level)
        reason = ""
    else:
        # A zero-width "0.00 (0.00 to 0.00)" would read as certainty; say why there is no interval instead.
        reason = ("no interval: one rater used a single category for every case, so kappa is fixed by the "
                  "margins and its large-sample variance is 0" if one_category
                  else "no interval: the large-sample variance estimate is 0 (too few or too uniform ratings)")
        interval = Interval(kappa, math.nan, math.nan, method, n=n, confidence=level, reason=reason)
    if se_null > 0:
        z = kappa / se_null
        p = float(2.0 * stats.norm.sf(abs(z)))
    else:
        z, p = math.nan, math.nan
        reason = reason or "the variance under no agreement beyond chance is zero: no test"
    return KappaResult(interval, se, se_null, z, p, weights, labels, counts.astype(int), reason)
