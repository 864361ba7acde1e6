"""Refer when unsure (core.metrics.selective): the calibrated band keeps its promise on held-out data where the truth
is known, refers nothing when nothing needs referring, and refuses samples too small to show the target."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from core.errors import InputError
from core.metrics.selective import (ReferralBand, apply_band, band_limits, calibrate_band, minimum_cases,
                                    risk_coverage_curve, selective_summary)


def draw(rng, n: int, separation: float = 1.5, prevalence: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a model whose log-odds are the class mean +-separation plus unit noise (truth known)."""
    truth = rng.random(n) < prevalence
    logits = rng.normal(0.0, 1.0, n) + np.where(truth, separation, -separation)
    return truth, 1.0 / (1.0 + np.exp(-logits))


def population_error(truth, scores, threshold, band) -> float:
    """The error among calls of `band` on a very large held-out sample (the population value, to ~0.0005)."""
    called = ~apply_band(scores, band)
    return float(((scores[called] >= threshold) != truth[called]).mean())


@pytest.mark.parametrize("threshold, prevalence, target, n", [(0.5, 0.4, 0.05, 400), (0.4, 0.25, 0.06, 600)])
def test_band_meets_its_target_on_held_out_data(threshold, prevalence, target, n):
    confidence, seeds = 0.9, 300
    held_truth, held_scores = draw(np.random.default_rng(10_000), 400_000, prevalence=prevalence)
    failures, coverages = 0, []
    for seed in range(seeds):
        truth, scores = draw(np.random.default_rng(seed), n, prevalence=prevalence)
        band = calibrate_band(truth, scores, threshold, target, confidence)
        error = population_error(held_truth, held_scores, threshold, band)
        failures += error > target
        coverages.append(float((~apply_band(held_scores, band)).mean()))
    # The promise: P(error among calls > target) <= 1 - confidence per draw. Over 300 independent draws the
    # failures are at most Binomial(300, 0.1); allow its 99.9% quantile, no more.
    assert failures <= binom.ppf(0.999, seeds, 1 - confidence), failures
    # ... and the band is not vacuous: the plain calls miss the target (error 6.6% and 11%), the band's calls meet it
    # while still calling most cases.
    assert ((held_scores >= threshold) != held_truth).mean() > target + 0.01
    assert np.mean(coverages) > 0.6


def test_a_model_already_at_target_refers_nothing():
    truth, scores = draw(np.random.default_rng(1), 2000, separation=4.0)
    assert ((scores >= 0.5) != truth).mean() < 0.01
    band = calibrate_band(truth, scores, 0.5, 0.05, 0.9, source="out-of-fold predictions")
    assert band.refers_nothing and band.low == band.high == 0.5 and band.width == 0
    assert band.coverage == 1.0 and not apply_band(scores, band).any()
    assert "no referral needed" in band.describe()


def test_too_few_cases_are_refused_with_the_number_needed():
    assert minimum_cases(0.05, 0.9) == 45  # 0.95^45 < 0.1 <= 0.95^44
    truth, scores = draw(np.random.default_rng(2), 44, separation=6.0)
    with pytest.raises(InputError, match=r"44 calibration cases cannot show an error among calls of at most 5\.0% "
                                         r"with 90% confidence: even with no error at least 45 are needed"):
        calibrate_band(truth, scores, 0.5, 0.05, 0.9)


def test_a_target_no_band_reaches_is_refused():
    rng = np.random.default_rng(3)
    truth, scores = rng.random(500) < 0.5, rng.random(500)  # scores carry no information
    with pytest.raises(InputError, match="no referral band meets an error among calls of at most 5.0%"):
        calibrate_band(truth, scores, 0.5, 0.05, 0.9)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="equally long"):
        calibrate_band([0, 1], [0.2], 0.5)
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        calibrate_band([0, 1], [0.2, 0.8], 1.0)
    with pytest.raises(InputError, match="target error"):
        calibrate_band([0, 1] * 50, [0.2, 0.8] * 50, 0.5, target_error=0.0)


def test_risk_coverage_curve_counts_calls_and_errors():
    truth = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    scores = np.array([0.1, 0.45, 0.55, 0.9, 0.6, 0.4])
    curve = risk_coverage_curve(truth, scores, 0.5, widths=[0.0, 0.25, 5.0])
    # width 0: everything called; errors: 0.6 (called positive, truth 0) and 0.4 (called negative, truth 1)
    assert curve.called.tolist()[0] == 6 and curve.errors.tolist()[0] == 2
    low, high = band_limits(0.5, 0.25)  # about 0.438 to 0.562: 0.45 and 0.55 referred
    assert low == pytest.approx(1 / (1 + math.exp(0.25))) and high == pytest.approx(1 / (1 + math.exp(-0.25)))
    assert curve.called.tolist()[1] == 4 and curve.errors.tolist()[1] == 2
    assert curve.called.tolist()[2] == 0 and math.isnan(curve.error[2])
    assert curve.coverage.tolist() == pytest.approx([1.0, 4 / 6, 0.0])


def test_band_round_trips_and_malformed_cards_are_named():
    truth, scores = draw(np.random.default_rng(4), 600)
    band = calibrate_band(truth, scores, 0.5)
    assert ReferralBand.from_dict(band.to_dict()) == band
    assert ReferralBand.from_dict(None) is None
    with pytest.raises(InputError, match="referral band is incomplete"):
        ReferralBand.from_dict({"low": 0.2})
    with pytest.raises(InputError, match="must lie within 0..1"):
        ReferralBand.from_dict({**band.to_dict(), "low": 0.9, "high": 0.1})


def test_selective_summary_separates_calls_from_referrals():
    truth = np.array([1, 0, 1, 0], dtype=bool)
    scores = np.array([0.9, 0.55, 0.45, 0.1])  # 0.55 and 0.45 are errors, and referred
    summary = selective_summary(truth, scores >= 0.5, [False, True, True, False])
    assert summary.n_referred == 2 and summary.coverage.value == 0.5
    assert summary.error_among_calls.value == 0.0 and summary.error_overall.value == 0.5
    assert summary.error_among_calls.method.lower().startswith("wilson")
