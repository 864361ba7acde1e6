"""How many labelled site images give a stable threshold: the Wilson half-width of sensitivity and specificity at N.

A threshold refitted on N labelled images from a new site is only as precise as sensitivity and specificity can be
measured on those N images: with N x share positives, sensitivity s is known to within the Wilson half-width of
s at that count (and specificity likewise on the negatives). `threshold_precision` gives that half-width for a few N
at the model's sensitivity, specificity and the site's class mix, so a user can see what 20, 40 or 80 images buy.
Counts are expected counts (N x share, not rounded): the half-width is the one Wilson's formula gives there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import InputError
from core.metrics.intervals import check_confidence, proportion_ci_arrays

REFIT_SIZES = (20, 40, 80)
METHOD = "Wilson score half-width at the expected counts (N x share of each class)"


@dataclass(frozen=True)
class ThresholdPrecision:
    """At N labelled images: the expected positives and negatives and the 95% Wilson half-width of sensitivity and
    specificity measured on them (NaN when a side has no image)."""

    n: int
    n_positive: float
    n_negative: float
    sensitivity_half_width: float
    specificity_half_width: float
    confidence: float = 0.95
    method: str = METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def _fraction(value, name: str, open_interval: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0 or (open_interval and number in (0.0, 1.0)):
        bounds = "strictly between 0 and 1" if open_interval else "between 0 and 1"
        raise InputError(f"{name} must be {bounds}, got {value!r}")
    return number


def threshold_precision(sensitivity: float, specificity: float, positive_share: float,
                        sizes=REFIT_SIZES, confidence: float = 0.95) -> tuple[ThresholdPrecision, ...]:
    """The Wilson half-width of sensitivity and specificity on N labelled images, for each N in `sizes`, at the
    given sensitivity and specificity and the site's share of positive images."""
    sens = _fraction(sensitivity, "sensitivity")
    spec = _fraction(specificity, "specificity")
    share = _fraction(positive_share, "share of positive images", open_interval=True)
    level = check_confidence(confidence)
    try:
        n = np.array([int(s) for s in sizes], dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"sample sizes must be whole numbers, got {sizes!r}") from None
    if n.size == 0 or (n < 1).any():
        raise InputError(f"sample sizes must be at least 1, got {list(sizes)!r}")
    pos, neg = n * share, n * (1.0 - share)
    _, sens_low, sens_high = proportion_ci_arrays(sens * pos, pos, confidence=level)
    _, spec_low, spec_high = proportion_ci_arrays(spec * neg, neg, confidence=level)
    return tuple(ThresholdPrecision(int(n[i]), float(pos[i]), float(neg[i]),
                                    float((sens_high[i] - sens_low[i]) / 2), float((spec_high[i] - spec_low[i]) / 2),
                                    level)
                 for i in range(n.size))
