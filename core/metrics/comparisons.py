"""Paired comparisons on the same cases: McNemar's test on correctness, DeLong's test on AUCs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.errors import InputError
from core.metrics.intervals import check_count
from core.metrics.roc import DeLongTest, delong_test  # noqa: F401  (re-exported: paired tests live here)

MCNEMAR_METHODS = ("exact", "mid_p", "asymptotic", "asymptotic_cc")


@dataclass(frozen=True)
class McNemarTest:
    """McNemar's test on the discordant pairs b (A right, B wrong) and c (A wrong, B right)."""

    statistic: float
    p_value: float
    method: str
    b: int
    c: int
    reason: str = ""


def mcnemar_test(b: int, c: int, method: str = "exact") -> McNemarTest:
    """McNemar's test from the two discordant counts.

    exact: two-sided binomial test of b in b + c at 1/2 (statistic = min(b, c)).
    mid_p: the exact p-value minus the probability of the observed table (Fagerland et al. 2013).
    asymptotic: chi-square (b - c)^2 / (b + c), 1 df. asymptotic_cc: Edwards' continuity
    correction (|b - c| - 1)^2 / (b + c). No discordant pairs: p = 1 (there is no evidence of a difference).
    """
    b, c = check_count(b, "b (discordant count)"), check_count(c, "c (discordant count)")
    if method not in MCNEMAR_METHODS:
        raise InputError(f"McNemar method must be one of {MCNEMAR_METHODS}, got {method!r}")
    discordant = b + c
    if discordant == 0:
        return McNemarTest(0.0, 1.0, method, b, c, reason="no discordant pairs: the two agree on every case")
    smaller = min(b, c)
    if method == "exact":
        p = stats.binomtest(smaller, discordant, 0.5).pvalue
        return McNemarTest(float(smaller), float(min(p, 1.0)), method, b, c)
    if method == "mid_p":
        # Two-sided mid-p: 2 * [P(X <= smaller) - P(X = smaller) / 2].
        p = 2.0 * (stats.binom.cdf(smaller, discordant, 0.5) - 0.5 * stats.binom.pmf(smaller, discordant, 0.5))
        return McNemarTest(float(smaller), float(min(p, 1.0)), method, b, c)
    gap = abs(b - c)
    if method == "asymptotic_cc":
        gap = max(gap - 1.0, 0.0)
    statistic = gap * gap / discordant
    return McNemarTest(float(statistic), float(stats.chi2.sf(statistic, 1)), method, b, c)


def discordant_counts(y_true, pred_a, pred_b) -> tuple[int, int]:
    """(b, c): cases only A got right, cases only B got right (labels compared for equality)."""
    truth, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not (truth.shape == a.shape == b.shape) or truth.ndim != 1:
        raise InputError(f"truth and the two sets of calls must be 1-D and equally long: "
                         f"{truth.shape}, {a.shape}, {b.shape}")
    right_a, right_b = a == truth, b == truth
    return int(np.count_nonzero(right_a & ~right_b)), int(np.count_nonzero(~right_a & right_b))


def compare_correctness(y_true, pred_a, pred_b, method: str = "exact") -> McNemarTest:
    """McNemar's test on whether two models (or readers) are right on the same cases."""
    b, c = discordant_counts(y_true, pred_a, pred_b)
    return mcnemar_test(b, c, method=method)
