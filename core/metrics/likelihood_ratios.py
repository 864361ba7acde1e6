"""Intervals for a ratio of two independent proportions (likelihood ratios): log, adjusted log, Koopman score."""

from __future__ import annotations

import math

from scipy import optimize, stats

from core.errors import InputError
from core.metrics.intervals import Interval, check_confidence, normal_quantile

LR_METHODS = ("log", "koopman", "adjusted_log")
_METHOD_LABELS = {
    "log": "log (Simel 1991)",
    "adjusted_log": "adjusted log (+0.5 to counts and totals)",
    "koopman": "Koopman score (1984)",
}


def _plain_ratio(x1: int, n1: int, x2: int, n2: int) -> float:
    """p1 / p2 with the clinical conventions: x/0 = inf for x > 0, 0/0 = NaN."""
    p1, p2 = x1 / n1, x2 / n2
    if p2 == 0:
        return math.nan if p1 == 0 else math.inf
    return p1 / p2


def ratio_ci(x1: int, n1: int, x2: int, n2: int, method: str = "log", confidence: float = 0.95,
             name: str = "ratio", parts: tuple[str, str] = ("the numerator proportion",
                                                           "the denominator proportion")) -> Interval:
    """Interval for (x1/n1) / (x2/n2), two independent binomial proportions.

    For LR+ pass (TP, TP+FN, FP, FP+TN); for LR- pass (FN, TP+FN, TN, FP+TN).
    `name` and `parts` (what the two proportions are, e.g. "sensitivity") only word the `reason`
    of degenerate results.
    """
    level = check_confidence(confidence)
    if method not in LR_METHODS:
        raise InputError(f"likelihood-ratio interval method must be one of {LR_METHODS}, got {method!r}")
    label = _METHOD_LABELS[method]
    n_total = n1 + n2
    if n1 == 0 or n2 == 0:
        part = parts[0] if n1 == 0 else parts[1]
        return Interval(math.nan, math.nan, math.nan, label, n=n_total, confidence=level,
                        reason=f"{name}: no cases to estimate {part} from")
    value = _plain_ratio(x1, n1, x2, n2)
    if method == "koopman":
        low, high, reason = _koopman(x1, n1, x2, n2, level, parts)
    elif method == "log" and (x1 == 0 or x2 == 0):
        # The log interval is undefined with a zero cell ("LR+ infinity", no interval); the Koopman score interval
        # stays informative there (a finite lower limit for an infinite ratio), so the zero cell switches to it
        # and the method says so.
        low, high, reason = _koopman(x1, n1, x2, n2, level, parts)
        label = f"{_METHOD_LABELS['koopman']} (zero cell: the log interval is undefined)"
    elif method == "log":
        low, high, reason = _log_interval(x1, n1, x2, n2, level, 0.0, parts)
    else:
        low, high, reason = _log_interval(x1, n1, x2, n2, level, 0.5, parts)
    if reason:
        reason = f"{name}: {reason}"
    return Interval(value, low, high, label, n=n_total, confidence=level, reason=reason)


def _log_interval(x1, n1, x2, n2, level, adjust, parts):
    """Wald interval on the log ratio; SE^2 = 1/x1 - 1/n1 + 1/x2 - 1/n2 (Simel, Samsa & Matchar 1991).

    adjust=0.5 is the adjusted log interval of Fagerland, Lydersen & Laake (2015, contingencytables'
    Adjusted_log_CI_2x2): 0.5 is added to each count x and to each total n (not to every cell, which
    would add 1 to the totals).
    """
    a1, a2 = x1 + adjust, x2 + adjust
    m1, m2 = n1 + adjust, n2 + adjust
    if a1 == 0 or a2 == 0:
        if a1 == 0 and a2 == 0:
            what = f"{parts[0]} and {parts[1]} are both 0: the ratio is undefined"
        elif a2 == 0:
            what = f"{parts[1]} is 0: the ratio is infinite"
        else:
            what = f"{parts[0]} is 0: the ratio is 0"
        return math.nan, math.nan, f"{what}; the log interval is undefined (use the Koopman or adjusted-log method)"
    log_ratio = math.log((a1 / m1) / (a2 / m2))
    se = math.sqrt(max(1 / a1 - 1 / m1 + 1 / a2 - 1 / m2, 0.0))
    half = normal_quantile(level) * se
    reason = ""
    if adjust and (x1 == 0 or x2 == 0):
        reason = "zero cell: the estimate is the plain ratio, the interval uses counts and totals + 0.5"
    return math.exp(log_ratio - half), math.exp(log_ratio + half), reason


def koopman_statistic(theta: float, x1: int, n1: int, x2: int, n2: int) -> float:
    """Score chi-square statistic for H0: p1 / p2 = theta (Koopman 1984; Miettinen & Nurminen without N/(N-1)).

    Uses the restricted maximum-likelihood estimates of p1 = theta * p2 under H0: the smaller root of
    theta*N p2^2 - (theta*n1 + x1 + n2 + theta*x2) p2 + (x1 + x2) = 0.
    """
    a = theta * (n1 + n2)
    b = theta * n1 + x1 + n2 + theta * x2
    c = x1 + x2
    disc = max(b * b - 4.0 * a * c, 0.0)
    # The numerically stable form of the smaller root (b > 0, so no cancellation).
    p2 = 2.0 * c / (b + math.sqrt(disc)) if c > 0 else 0.0
    p1 = min(theta * p2, 1.0)
    diff = x1 / n1 - theta * x2 / n2
    variance = p1 * (1.0 - p1) / n1 + theta * theta * p2 * (1.0 - p2) / n2
    if variance <= 0.0:
        return 0.0 if diff == 0 else math.inf
    return diff * diff / variance


def _koopman(x1, n1, x2, n2, level, parts=("the numerator proportion", "the denominator proportion")):
    """Koopman's score interval: the two values of the ratio where the score statistic equals chi2_1(level)."""
    if x1 == 0 and x2 == 0:
        return 0.0, math.inf, f"{parts[0]} and {parts[1]} are both 0: the ratio is undefined; any value fits"
    critical = float(stats.chi2.ppf(level, 1))

    def excess(log_theta: float) -> float:
        return koopman_statistic(math.exp(log_theta), x1, n1, x2, n2) - critical

    if x1 == 0:
        # Estimate 0: the statistic vanishes as the ratio goes to 0, so walk up from there.
        high = math.exp(_walk_to_root(excess, -_LOG_LIMIT, +1))
        return 0.0, high, f"{parts[0]} is 0: the ratio is 0; the lower limit is 0"
    if x2 == 0:
        # Estimate infinite (e.g. specificity 1 for LR+): the lower limit stays finite.
        low = math.exp(_walk_to_root(excess, _LOG_LIMIT, -1))
        return low, math.inf, f"{parts[1]} is 0: the ratio is infinite; the upper limit is unbounded"
    estimate = math.log((x1 / n1) / (x2 / n2))
    return math.exp(_walk_to_root(excess, estimate, -1)), math.exp(_walk_to_root(excess, estimate, +1)), ""


# exp(300) keeps every intermediate of the statistic (squares included) well inside float range.
_LOG_LIMIT = 300.0


def _walk_to_root(excess, inside: float, direction: int) -> float:
    """From a log-ratio where `excess` < 0, step outwards (doubling) until it turns positive, then solve."""
    step = 0.5
    outside = inside + direction * step
    while excess(outside) < 0:
        if abs(outside) >= _LOG_LIMIT:
            return direction * math.inf
        inside = outside
        step *= 2.0
        outside = max(-_LOG_LIMIT, min(_LOG_LIMIT, inside + direction * step))
    lo, hi = sorted((inside, outside))
    return optimize.brentq(excess, lo, hi, xtol=1e-13, rtol=1e-13)
