"""Refer when unsure: selective prediction with a stated error rate among the calls the model makes.

A *referral band* [low, high) on the score of the model's operating view sits around its operating threshold: a
case whose score falls inside the band is referred to a reader; every other case is called as before (score >=
threshold: positive). The band is calibrated on labelled scores the model did not train on (out-of-fold
predictions of the training images, or a labelled sample of a site) by Learn then Test (Angelopoulos, Bates,
Candes, Jordan, Lei 2021) with fixed-sequence testing:

* the candidate bands are fixed before the data are seen: symmetric in log-odds around the threshold, half-widths
  `CANDIDATE_WIDTHS` (0 = refer nothing);
* for each band, H0: "the error rate among the calls made outside it exceeds alpha" is tested with the exact
  binomial test on the k errors among the m calibration cases called (equivalently: its one-sided Clopper-Pearson
  upper bound at confidence 1 - delta is at most alpha);
* the bands are tested from the widest to the narrowest, stopping at the first one not rejected; the narrowest
  rejected band is chosen (it refers the fewest cases). The sequence starts at the widest band that still calls
  at least a quarter of the cases (`MIN_COVERAGE`) and enough to show the target at all (`minimum_cases`), a
  choice made from the scores alone, not the labels: a band referring more than three cases in four is not
  offered.

The fixed sequence controls the chance of a false promise exactly when the error among calls does not grow as the
band widens (the usual case: the cases nearest the threshold are the hardest); tests/test_metrics_selective.py
checks the promise on held-out draws.

Guarantee: if the calibration cases and the future cases are exchangeable (drawn from the same population), then
with probability at least 1 - delta over the calibration sample, the error rate among the calls made outside the
chosen band is at most alpha. It does not hold across a shift between sites (another scanner, another prevalence):
a band for a new site must be calibrated again on labelled cases of that site.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, binom

from core.errors import InputError
from core.metrics.intervals import Interval, proportion_ci

DEFAULT_TARGET_ERROR = 0.05  # error rate among the calls made (binary view)
DEFAULT_CONFIDENCE = 0.90  # 1 - delta: the chance that the calibrated band keeps its promise
# Half-widths in log-odds around the threshold, fixed in advance (Learn then Test needs a data-free family):
# 0 (refer nothing) to 6 (a band from about 0.25% to 99.75% around a threshold of 0.5), steps of 0.05.
CANDIDATE_WIDTHS = np.round(np.arange(0.0, 6.0 + 1e-9, 0.05), 10)
METHOD = ("Learn then Test: exact binomial (Clopper-Pearson) upper bound on the error among the calls made, "
          "bands symmetric in log-odds around the threshold tested from the widest to the narrowest "
          "(fixed-sequence), the narrowest that meets the target chosen")
ASSUMPTION = ("calibration and future cases exchangeable (same population); it does not hold across a shift "
              "between sites, so a band for a new site is calibrated again on labelled cases of that site")
MIN_COVERAGE = 0.25  # bands calling fewer than this share of the calibration cases are not considered
_EPS = 1e-12


@dataclass(frozen=True)
class ReferralBand:
    """Scores in [low, high) are referred to a reader; calls outside meet `target_error` with `confidence`."""

    low: float
    high: float
    target_error: float
    confidence: float
    method: str
    n_calibration: int
    coverage: float  # share of the calibration cases called (outside the band)
    error_on_calibration: float  # error among those calls
    source: str
    threshold: float = math.nan  # the operating threshold the band sits around
    width: float = 0.0  # half-width in log-odds
    upper_bound: float = math.nan  # Clopper-Pearson upper bound on the error among calls, calibration data

    @property
    def refers_nothing(self) -> bool:
        return not self.high > self.low

    def to_dict(self) -> dict:
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "model card") -> "ReferralBand | None":
        if not data:
            return None
        try:
            band = cls(low=float(data["low"]), high=float(data["high"]), target_error=float(data["target_error"]),
                       confidence=float(data["confidence"]), method=str(data["method"]),
                       n_calibration=int(data["n_calibration"]), coverage=float(data["coverage"]),
                       error_on_calibration=float(data["error_on_calibration"]), source=str(data["source"]),
                       threshold=_float_or_nan(data.get("threshold")), width=float(data.get("width") or 0.0),
                       upper_bound=_float_or_nan(data.get("upper_bound")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: referral band is incomplete or malformed ({exc})") from None
        if not 0.0 <= band.low <= band.high <= 1.0:
            raise InputError(f"{source}: referral band [{band.low}, {band.high}) must lie within 0..1, low first")
        return band

    def describe(self) -> str:
        if self.refers_nothing:
            return (f"no referral needed: the calls already meet an error of at most {self.target_error:.0%} "
                    f"with {self.confidence:.0%} confidence ({self.n_calibration:,} calibration cases, {self.source})")
        return (f"scores from {self.low:.3f} to {self.high:.3f} are referred to a reader, so that the calls made meet "
                f"an error of at most {self.target_error:.0%} with {self.confidence:.0%} confidence; on its "
                f"{self.n_calibration:,} calibration cases ({self.source}) it calls {self.coverage:.0%} with "
                f"{self.error_on_calibration:.1%} error")


def _float_or_nan(value) -> float:
    return math.nan if value is None else float(value)


def _logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def _expit(x: np.ndarray | float):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def band_limits(threshold: float, width: float) -> tuple[float, float]:
    """[low, high) of the band of half-width `width` in log-odds around `threshold` (width 0: empty)."""
    if width <= 0:
        return float(threshold), float(threshold)
    centre = _logit(threshold)
    return float(_expit(centre - width)), float(_expit(centre + width))


def _check_inputs(truth, scores, threshold) -> tuple[np.ndarray, np.ndarray, float]:
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=float)
    if truth.ndim != 1 or truth.shape != scores.shape:
        raise InputError(f"truth and scores must be 1-D and equally long: {truth.shape} vs {scores.shape}")
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise InputError("scores must be probabilities between 0 and 1")
    if not np.isin(truth, (0, 1, True, False)).all():
        raise InputError("truth must be 0/1 (1 = the positive side of the view)")
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise InputError(f"the operating threshold must lie strictly between 0 and 1, got {threshold}")
    return truth.astype(bool), scores, threshold


def minimum_cases(target_error: float, confidence: float) -> int:
    """The fewest calibration cases that can show an error of at most `target_error` with `confidence`: with no
    error among all n, the Clopper-Pearson upper bound 1 - delta^(1/n) must reach the target."""
    return int(math.ceil(math.log(1.0 - confidence) / math.log(1.0 - target_error) - 1e-9))


def clopper_pearson_upper(errors, calls, confidence: float) -> np.ndarray:
    """One-sided exact upper bound on an error rate from `errors` among `calls` (1 where there are no calls)."""
    errors = np.asarray(errors, dtype=float)
    calls = np.asarray(calls, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = beta.ppf(confidence, errors + 1, np.maximum(calls - errors, 1e-300))
    return np.where(calls <= 0, 1.0, np.where(errors >= calls, 1.0, upper))


@dataclass(frozen=True)
class RiskCoverage:
    """Bands of growing width: their limits, the share of cases called, and the error among those calls."""

    widths: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int
    called: np.ndarray
    errors: np.ndarray

    @property
    def coverage(self) -> np.ndarray:
        return self.called / self.n if self.n else np.full(self.called.shape, np.nan)

    @property
    def error(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.called > 0, self.errors / np.maximum(self.called, 1), np.nan)

    def upper(self, confidence: float) -> np.ndarray:
        return clopper_pearson_upper(self.errors, self.called, confidence)

    def table(self) -> dict:
        return {"width": self.widths, "low": self.low, "high": self.high, "called": self.called,
                "errors": self.errors, "coverage": self.coverage, "error_among_calls": self.error}


def risk_coverage_curve(truth, scores, threshold: float, widths=None) -> RiskCoverage:
    """For each band of half-width w (log-odds, growing; default CANDIDATE_WIDTHS) around `threshold`: how many
    cases are called outside it and how many of those calls are wrong (call: score >= threshold is positive)."""
    truth, scores, threshold = _check_inputs(truth, scores, threshold)
    widths = CANDIDATE_WIDTHS if widths is None else np.asarray(widths, dtype=float)
    wrong = (scores >= threshold) != truth
    limits = np.array([band_limits(threshold, w) for w in widths]).reshape(-1, 2)
    low, high = limits[:, 0], limits[:, 1]
    inside = (scores[None, :] >= low[:, None]) & (scores[None, :] < high[:, None])
    called = (~inside).sum(axis=1)
    errors = (~inside & wrong[None, :]).sum(axis=1)
    return RiskCoverage(widths, low, high, int(scores.size), called.astype(np.int64), errors.astype(np.int64))


def calibrate_band(truth, scores, threshold: float, target_error: float = DEFAULT_TARGET_ERROR,
                   confidence: float = DEFAULT_CONFIDENCE, source: str = "calibration cases") -> ReferralBand:
    """The narrowest band around `threshold` whose calls meet `target_error` with `confidence` (Learn then Test,
    see the module's docstring). InputError when the cases are too few to show the target at all, or when even
    the widest candidate band does not meet it."""
    truth, scores, threshold = _check_inputs(truth, scores, threshold)
    target_error, confidence = float(target_error), float(confidence)
    if not 0.0 < target_error < 1.0:
        raise InputError(f"the target error among calls must lie strictly between 0 and 1, got {target_error}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"the confidence must lie strictly between 0 and 1, got {confidence}")
    needed = minimum_cases(target_error, confidence)
    if scores.size < needed:
        raise InputError(f"{scores.size} calibration cases cannot show an error among calls of at most "
                         f"{target_error:.1%} with {confidence:.0%} confidence: even with no error at least "
                         f"{needed} are needed")
    curve = risk_coverage_curve(truth, scores, threshold)
    # p-value of H0 "error among calls > target" for each band: P(Binomial(m, target) <= k).
    p_values = np.where(curve.called > 0, binom.cdf(curve.errors, np.maximum(curve.called, 1), target_error), 1.0)
    # The sequence starts at the widest band that still calls enough cases (at least MIN_COVERAGE of them, and
    # enough to show the target at all: which bands do depends on the scores only, never on the labels); then
    # narrower and narrower, stopping at the first band not shown safe.
    enough = np.flatnonzero(curve.called >= max(needed, math.ceil(MIN_COVERAGE * scores.size)))
    start = int(enough.max())  # width 0 calls every case, so some band always qualifies
    chosen = None
    for j in range(start, -1, -1):
        if p_values[j] > 1.0 - confidence:
            break
        chosen = j
    if chosen is None:
        raise InputError(f"no referral band meets an error among calls of at most {target_error:.1%} with "
                         f"{confidence:.0%} confidence on these {scores.size} calibration cases: even referring "
                         f"scores from {curve.low[start]:.3f} to {curve.high[start]:.3f} (calling "
                         f"{curve.coverage[start]:.0%} of the cases) leaves {int(curve.errors[start])} errors among "
                         f"{int(curve.called[start])} calls; choose a higher target error or a lower confidence")
    upper = float(curve.upper(confidence)[chosen])
    return ReferralBand(float(curve.low[chosen]), float(curve.high[chosen]), target_error, confidence, METHOD,
                        int(scores.size), float(curve.coverage[chosen]), float(curve.error[chosen]), source,
                        threshold, float(curve.widths[chosen]), upper)


def apply_band(scores, band: ReferralBand | None) -> np.ndarray:
    """Referred mask: True where the score falls in [low, high) (nothing referred without a band)."""
    scores = np.asarray(scores, dtype=float)
    if band is None or band.refers_nothing:
        return np.zeros(scores.shape, dtype=bool)
    return (scores >= band.low) & (scores < band.high)


@dataclass(frozen=True)
class SelectiveSummary:
    """Referrals on a test set: how many cases were called, and the error of the view's calls among those called
    and overall (Wilson intervals)."""

    n: int
    n_referred: int
    coverage: Interval
    error_among_calls: Interval
    error_overall: Interval

    def to_dict(self) -> dict:
        return {"n": self.n, "n_referred": self.n_referred, "coverage": self.coverage.to_dict(),
                "error_among_calls": self.error_among_calls.to_dict(), "error_overall": self.error_overall.to_dict()}


def selective_summary(truth, called_positive, referred, confidence: float = 0.95) -> SelectiveSummary:
    """Coverage (share called) and the view's error among the calls made vs over every case, on labelled cases:
    `truth` and `called_positive` are the positive side of the view (truth, call), `referred` the referral mask."""
    truth = np.asarray(truth, dtype=bool)
    called_positive = np.asarray(called_positive, dtype=bool)
    referred = np.asarray(referred, dtype=bool)
    if not truth.shape == called_positive.shape == referred.shape or truth.ndim != 1:
        raise InputError(f"truth, calls and referred mask must be 1-D and equally long: {truth.shape}, "
                         f"{called_positive.shape}, {referred.shape}")
    wrong = called_positive != truth
    n, called = int(truth.size), int((~referred).sum())
    return SelectiveSummary(n, n - called, proportion_ci(called, n, "wilson", confidence),
                            proportion_ci(int((wrong & ~referred).sum()), called, "wilson", confidence),
                            proportion_ci(int(wrong.sum()), n, "wilson", confidence))


# -- the band of a trained model ------------------------------------------------------------------------------
def referral_card(task, truth, probabilities, operating, target_error: float = DEFAULT_TARGET_ERROR,
                  confidence: float = DEFAULT_CONFIDENCE, source: str | None = None) -> dict:
    """The model card's `referral_band` (the band, or None) and `referral_calibration` (the calibration scores on
    the operating view and their 0/1 truth, numbers only, so another target can be chosen later; with `reason` when
    no band could be calibrated), from the same labelled predictions that chose `operating` (a ModelOperatingPoint;
    None: no band, e.g. argmax calls or a multi-label task)."""
    from core.metrics.referral import binary_view_data

    if operating is None:
        return {"referral_band": None, "referral_calibration": None}
    probs = np.asarray(probabilities, dtype=float)
    data = binary_view_data(np.asarray(truth, dtype=np.int64), probs, task.classes, operating.binary_view)
    source = source or operating.source
    calibration = {"view": operating.view, "threshold": float(operating.threshold), "source": source,
                   "truth": data.truth.astype(int).tolist(), "scores": np.round(data.scores, 6).tolist()}
    try:
        band = calibrate_band(data.truth, data.scores, operating.threshold, target_error, confidence, source)
    except InputError as exc:
        return {"referral_band": None, "referral_calibration": {**calibration, "reason": str(exc)}}
    return {"referral_band": band.to_dict(), "referral_calibration": calibration}


def calibration_arrays(calibration: dict | None, source: str = "model card") -> tuple[np.ndarray, np.ndarray, float]:
    """(truth, scores, threshold) stored by referral_card; InputError when absent or malformed."""
    if not calibration:
        raise InputError(f"{source}: no calibration scores stored for a referral band (a run trained before "
                         "referral bands, or one without an operating point)")
    try:
        truth = np.asarray(calibration["truth"], dtype=int)
        scores = np.asarray(calibration["scores"], dtype=float)
        threshold = float(calibration["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: the stored calibration scores are malformed ({exc})") from None
    _check_inputs(truth, scores, threshold)
    return truth, scores, threshold


def operating_scores(probabilities, classes, view) -> np.ndarray:
    """Every case's score on an operating view (one covering every class): the summed probability of its positive
    classes, as core.metrics.referral.binary_view_data scores such a view."""
    probs = np.asarray(probabilities, dtype=float)
    classes = [str(c) for c in classes]
    if set(view.positive) | set(view.negative) != set(classes):
        raise InputError(f"binary view {view.name!r} leaves some classes out, so a referral band cannot be applied "
                         "to every case")
    return probs[:, [classes.index(c) for c in view.positive]].sum(axis=1)
