"""Interval estimates (value, low, high, method) and confidence intervals for a single proportion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from core.errors import InputError

PROPORTION_METHODS = ("wilson", "exact")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval.

    Degenerate cases (no cases, a zero cell, an infinite ratio) keep the object: the numbers are
    NaN or infinity and `reason` says why, so a table of results never loses a row.
    """

    value: float
    low: float
    high: float
    method: str
    n: int | None = None
    confidence: float = 0.95
    reason: str = ""

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, x: float) -> bool:
        return bool(self.low <= x <= self.high)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        pct = f"{self.confidence:.0%}"
        text = f"{self.value:.4g} ({pct} CI {self.low:.4g} to {self.high:.4g}, {self.method})"
        return f"{text}: {self.reason}" if self.reason else text


def informative_bounds(low, high) -> bool:
    """Whether an interval's bounds say something: both known and not one point. The one rule the dashboard and
    the report follow; a zero-width "1.000 to 1.000" is not shown as an interval (its reason is)."""
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        return False
    return not (math.isnan(low) or math.isnan(high)) and high > low


def p_value_text(p, floor: float = 0.001) -> str:
    """A p-value as a reader meets it: "< 0.001" below the floor (never 0 or a row of zeros), else three decimals;
    "not computed" when missing."""
    if p is None or not math.isfinite(float(p)):
        return "not computed"
    return f"< {floor:g}" if float(p) < floor else f"{float(p):.3f}"


def check_open_fraction(value, name: str, example: str = "") -> float:
    """`value` as a float strictly inside (0, 1), or an InputError naming `name` (e.g. confidence, prevalence)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 < number < 1.0:
        hint = f" (e.g. {example})" if example else ""
        raise InputError(f"{name} must be strictly between 0 and 1{hint}, got {value!r}")
    return number


def check_confidence(confidence: float) -> float:
    """Return the confidence level as a float, or raise InputError if it is not strictly in (0, 1)."""
    return check_open_fraction(confidence, "confidence", "0.95")


def normal_quantile(confidence: float) -> float:
    """Two-sided standard normal critical value, e.g. 1.959964 for 0.95."""
    return float(stats.norm.ppf(0.5 + check_confidence(confidence) / 2.0))


def check_count(value, name: str) -> int:
    """A non-negative whole-number count, or InputError naming the field."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(as_float) or as_float < 0 or as_float != int(as_float):
        raise InputError(f"{name} must be a non-negative whole number, got {value!r}")
    return int(as_float)


def proportion_ci(x: int, n: int, method: str = "wilson", confidence: float = 0.95) -> Interval:
    """Confidence interval for the proportion x/n.

    method="wilson": Wilson score interval. method="exact": Clopper-Pearson, alpha/2 in each
    tail, with bounds 0 (x = 0) and 1 (x = n) at the boundaries, as R's binom.test / binom.confint.
    Both come from statsmodels' proportion_confint ("wilson" / "beta").
    """
    x = check_count(x, "x (number of successes)")
    n = check_count(n, "n (number of trials)")
    level = check_confidence(confidence)
    if method not in PROPORTION_METHODS:
        raise InputError(f"proportion interval method must be one of {PROPORTION_METHODS}, got {method!r}")
    if x > n:
        raise InputError(f"x ({x}) cannot exceed n ({n})")
    label = "Wilson score" if method == "wilson" else "Clopper-Pearson exact"
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, label, n=0, confidence=level, reason="no cases (n = 0)")
    low, high = proportion_confint(x, n, alpha=1.0 - level, method="wilson" if method == "wilson" else "beta")
    low, high = float(low), float(high)
    if method == "exact":
        # statsmodels only sets the boundary values for array input; make them exact for scalars too.
        low = 0.0 if x == 0 else low
        high = 1.0 if x == n else high
    value = x / n
    # Guard against last-bit rounding putting the estimate a hair outside its own interval.
    return Interval(value, min(low, value), max(high, value), label, n=n, confidence=level)


def proportion_ci_arrays(x: np.ndarray, n: np.ndarray, method: str = "wilson",
                         confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised proportion intervals for many (x, n) pairs at once: (value, low, high), NaN where n = 0."""
    level = check_confidence(confidence)
    if method not in PROPORTION_METHODS:
        raise InputError(f"proportion interval method must be one of {PROPORTION_METHODS}, got {method!r}")
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    safe_n = np.where(n > 0, n, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = proportion_confint(x, safe_n, alpha=1.0 - level,
                                       method="wilson" if method == "wilson" else "beta")
        low = np.atleast_1d(np.asarray(low, dtype=float)).copy()
        high = np.atleast_1d(np.asarray(high, dtype=float)).copy()
    value = np.atleast_1d(x / safe_n)
    if method == "exact":
        low[np.atleast_1d(x) == 0] = 0.0
        high[np.atleast_1d(x == n)] = 1.0
    empty = np.atleast_1d(n <= 0)
    for arr in (value, low, high):
        arr[empty] = np.nan
    return value, np.minimum(low, value), np.maximum(high, value)
