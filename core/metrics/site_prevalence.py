"""Is a test set's prevalence far from training's? The positive side of a binary view, estimated without labels.

The model's calls on a site give one reading of its prevalence (the share called positive); EM on the calibrated
probabilities (core.metrics.prior_shift.em_prevalence, Saerens et al. 2002) gives the maximum-likelihood estimate
with a bootstrap interval. Here the classes are first collapsed onto the view's two sides (the positive side's
probability is the sum of its classes'), so the estimate and its interval are those of the positive side's share.

The rule (`prevalence_far`): the site's prevalence is far from training's when the training prevalence lies outside
EM's interval AND the estimate differs from it by at least PREVALENCE_GAP (0.10) in absolute terms. The first
condition keeps chance out (a small test set has a wide interval); the second keeps a real but small difference,
which a large test set would make significant, from being called a shift. An interval of zero width gives no
verdict (see prevalence_far).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import InputError
from core.metrics.intervals import Interval
from core.metrics.prior_shift import em_prevalence

PREVALENCE_GAP = 0.10
MIN_WIDTH = 1e-4  # an EM interval narrower than this (a prevalence to 4 decimals) is the boundary case below
RULE = (f"the training prevalence lies outside EM's interval and the estimate differs from it by at least "
        f"{PREVALENCE_GAP:.2f}")


@dataclass(frozen=True)
class SitePrevalence:
    """The positive side's share: in training, in the model's calls on the site, and estimated by EM (interval)."""

    training: float
    called: float
    estimated: Interval
    far: bool
    converged: bool = True
    rule: str = RULE

    @property
    def informative(self) -> bool:
        """Whether EM's interval has width (see prevalence_far): otherwise the estimate says nothing."""
        return bool(math.isfinite(self.estimated.low) and math.isfinite(self.estimated.high)
                    and self.estimated.high - self.estimated.low >= MIN_WIDTH)

    @property
    def gap(self) -> float:
        return float(self.estimated.value - self.training)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["gap"] = self.gap
        return out


def prevalence_far(training: float, estimated: Interval, min_gap: float = PREVALENCE_GAP) -> bool:
    """The rule above: `training` outside [estimated.low, estimated.high] and |estimated - training| >= min_gap.
    No verdict (False) without an informative interval: a bootstrap interval of (about) zero width means every resample
    gave the same answer, which EM does when it runs to 0 or 1 on probabilities that barely vary (a model that
    cannot tell the classes apart), not when the data pin the prevalence."""
    values = (float(training), float(estimated.value), float(estimated.low), float(estimated.high))
    if not all(math.isfinite(v) for v in values) or values[3] - values[2] < MIN_WIDTH:
        return False  # no estimate worth the name, no verdict
    return (not estimated.contains(values[0])) and abs(values[1] - values[0]) >= float(min_gap) - 1e-12


def side_prevalence(probabilities, called_positive, positive, training: float, *, calibrated_at: float | None = None,
                    patient_ids=None, n_resamples: int = 200, confidence: float = 0.95,
                    seed: int = 0) -> SitePrevalence:
    """Training share `training` of the view's positive side (class indices `positive`) against the site's: the
    share of `called_positive` (booleans: the model's calls) and EM's estimate on the site's `probabilities`
    (n x k), both sides collapsed to one column each. `calibrated_at`: the positive side's share in the prior the
    probabilities are calibrated to (a class-balanced head's is not the data's; default `training`)."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[0] == 0:
        raise InputError(f"probabilities must be a table of n >= 1 images x k classes, got shape {p.shape}")
    called = np.asarray(called_positive, dtype=bool).reshape(-1)
    if called.size != p.shape[0]:
        raise InputError(f"{called.size} calls for {p.shape[0]} rows of probabilities")
    pos = np.zeros(p.shape[1], dtype=bool)
    pos[np.asarray(list(positive), dtype=np.int64)] = True
    if pos.all() or not pos.any():
        raise InputError("a prevalence check needs classes on both sides of the view")
    share = float(training)
    if not 0.0 < share < 1.0:
        raise InputError(f"the training prevalence must be strictly between 0 and 1, got {training!r}")
    base = share if calibrated_at is None else float(calibrated_at)
    if not 0.0 < base < 1.0:
        raise InputError(f"the calibration prior's positive share must be strictly between 0 and 1, got "
                         f"{calibrated_at!r}")
    two = np.column_stack([p[:, pos].sum(axis=1), p[:, ~pos].sum(axis=1)])
    estimate = em_prevalence(two, [base, 1.0 - base], patient_ids=patient_ids, n_resamples=n_resamples,
                             confidence=confidence, seed=seed)
    interval = estimate.intervals[0]
    return SitePrevalence(share, float(called.mean()), interval, prevalence_far(share, interval),
                          bool(estimate.converged))
