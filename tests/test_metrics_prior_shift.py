"""Label-shift statistics (core.metrics.prior_shift) on built data where the truth is known.

A 'calibrated model' is the exact Bayes posterior of Gaussian classes at the training prior; a site is the same
classes resampled to another prevalence, so pure prior shift holds and the true site prior is known."""

import numpy as np
import pytest
from scipy.optimize import minimize

from core.errors import InputError
from core.metrics.prior_shift import (
    adjust_threshold,
    adjust_to_prior,
    bbse_prevalence,
    em_prevalence,
    prior_log_ratio,
)

MEANS = np.array([0.0, 1.6, 3.0])


def _posterior(x, prior, means):
    """Exact p(y | x) for unit-variance Gaussian classes at `means` with class prior `prior`."""
    log = np.log(np.asarray(prior))[None, :] - 0.5 * (x[:, None] - np.asarray(means)[None, :]) ** 2
    log -= log.max(axis=1, keepdims=True)
    p = np.exp(log)
    return p / p.sum(axis=1, keepdims=True)


def _site(rng, n, site_prior, train_prior, means):
    """n images at exactly `site_prior` (counts rounded), scored by the model calibrated at `train_prior`."""
    counts = np.round(np.asarray(site_prior) * n).astype(int)
    y = np.repeat(np.arange(len(counts)), counts)
    x = rng.normal(np.asarray(means)[y], 1.0)
    return _posterior(x, train_prior, means), y


@pytest.mark.parametrize("prevalence", [0.10, 0.30, 0.60])
def test_em_recovers_a_known_site_prevalence_within_its_interval(prevalence):
    rng = np.random.default_rng(0)
    train = [0.5, 0.5]
    p, y = _site(rng, 800, [1 - prevalence, prevalence], train, MEANS[:2])
    est = em_prevalence(p, train, classes=["NORMAL", "PNEUMONIA"])
    assert est.converged and est.n == 800
    assert est.intervals[1].contains(prevalence)
    assert abs(est.prior[1] - prevalence) < 0.05
    # the naive estimate (mean of unadjusted probabilities) is pulled toward the training prior; EM is not
    assert abs(est.prior[1] - prevalence) < abs(p[:, 1].mean() - prevalence)
    assert "bootstrap percentile" in est.intervals[1].method and "by images" in est.intervals[1].method
    assert est.to_dict()["intervals"]["PNEUMONIA"]["low"] == est.intervals[1].low


def test_em_interval_covers_the_truth_at_about_its_confidence():
    hits = []
    for seed in range(24):
        rng = np.random.default_rng(100 + seed)
        prevalence = (0.10, 0.30, 0.60)[seed % 3]
        p, _ = _site(rng, 400, [1 - prevalence, prevalence], [0.4, 0.6], MEANS[:2])
        est = em_prevalence(p, [0.4, 0.6], n_resamples=200, seed=seed)
        hits.append(est.intervals[1].contains(prevalence))
    # 95% intervals: 24 draws, P(at most 19 hits) < 0.01 if the coverage is right
    assert sum(hits) >= 20, hits


def test_em_is_the_maximum_likelihood_prior_three_classes():
    """Saerens et al.: the EM fixed point maximises sum_i log sum_k p_ik q_k / pi_k; check it against scipy."""
    rng = np.random.default_rng(7)
    train, site = [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]
    p, _ = _site(rng, 900, site, train, MEANS)
    est = em_prevalence(p, train, n_resamples=20)

    def neg_loglik(z):
        q = np.exp(z - z.max())
        q /= q.sum()
        return -np.log(p @ (q / np.array(train))).sum()

    best = minimize(neg_loglik, np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                               "maxiter": 20000})
    mle = np.exp(best.x - best.x.max())
    mle /= mle.sum()
    np.testing.assert_allclose(est.prior, mle, atol=1e-4)
    np.testing.assert_allclose(est.prior, site, atol=0.06)


def test_patient_bootstrap_is_wider_when_a_patients_images_are_alike():
    rng = np.random.default_rng(3)
    p, _ = _site(rng, 150, [0.7, 0.3], [0.5, 0.5], MEANS[:2])
    p = np.repeat(p, 4, axis=0)  # four identical images per patient
    patients = np.repeat(np.arange(150), 4)
    by_image = em_prevalence(p, [0.5, 0.5])
    by_patient = em_prevalence(p, [0.5, 0.5], patient_ids=patients)
    assert by_patient.prior == pytest.approx(by_image.prior)
    assert by_patient.intervals[1].width > 1.5 * by_image.intervals[1].width
    assert "by patients" in by_patient.intervals[1].method


def test_em_reports_non_convergence():
    rng = np.random.default_rng(4)
    p, _ = _site(rng, 300, [0.9, 0.1], [0.5, 0.5], MEANS[:2])
    est = em_prevalence(p, [0.5, 0.5], max_iter=2, n_resamples=5)
    assert not est.converged and est.iterations == 2


def test_adjust_to_prior_equals_the_analytic_posterior():
    x = np.linspace(-3, 5, 41)
    train, site = [0.2, 0.5, 0.3], [0.05, 0.15, 0.8]
    adjusted = adjust_to_prior(_posterior(x, train, MEANS), train, site)
    np.testing.assert_allclose(adjusted, _posterior(x, site, MEANS), atol=1e-12)
    # the same as adding log(q / pi) to every logit (what a head's bias shift does)
    logits = np.log(_posterior(x, train, MEANS)) + prior_log_ratio(train, site)
    soft = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(axis=1, keepdims=True), adjusted, atol=1e-12)


def test_adjust_threshold_keeps_every_binary_call():
    rng = np.random.default_rng(5)
    p, _ = _site(rng, 500, [0.5, 0.5], [0.7, 0.3], MEANS[:2])
    for threshold in (0.1, 0.37, 0.8):
        new = adjust_threshold(threshold, [1], [0.7, 0.3], [0.2, 0.8])
        adjusted = adjust_to_prior(p, [0.7, 0.3], [0.2, 0.8])
        np.testing.assert_array_equal(p[:, 1] >= threshold, adjusted[:, 1] >= new)
        assert new > threshold  # more positives expected: the same calls need a higher cut on the adjusted scale


def test_bbse_recovers_a_known_prior():
    rng = np.random.default_rng(6)
    train = [0.5, 0.5]
    p_src, y_src = _site(rng, 4000, train, train, MEANS[:2])
    p_site, _ = _site(rng, 4000, [0.8, 0.2], train, MEANS[:2])
    q = bbse_prevalence(y_src, p_src.argmax(1), p_site.argmax(1), train, 2)
    np.testing.assert_allclose(q, [0.8, 0.2], atol=0.04)
    with pytest.raises(InputError, match="singular"):
        bbse_prevalence(y_src, np.zeros_like(y_src), p_site.argmax(1), train, 2)


@pytest.mark.parametrize("probs, prior, message", [
    ([[0.5, 0.6]], [0.5, 0.5], "sum to 1"),
    ([[0.5, 0.5]], [0.5, 0.3, 0.2], "one value per class"),
    ([[0.5, 0.5]], [1.0, 0.0], "positive for every class"),
    (np.zeros((0, 2)), [0.5, 0.5], "no images"),
    ([[np.nan, 1.0]], [0.5, 0.5], "finite"),
])
def test_bad_input_is_named(probs, prior, message):
    with pytest.raises(InputError, match=message):
        em_prevalence(probs, prior)


def test_training_prior_is_the_balanced_one_when_classes_are_balanced():
    from core.metrics.prior_shift import training_prior_record

    plain = training_prior_record(["A", "B", "C"], [10, 30, 0])
    assert plain["prior"] == pytest.approx([0.25, 0.75, 0.0]) and plain["counts"] == [10, 30, 0]
    balanced = training_prior_record(["A", "B", "C"], [10, 30, 0], "weights")
    assert balanced["prior"] == pytest.approx([0.5, 0.5, 0.0]) and "balanced" in balanced["basis"]


def test_a_view_consistent_prior_keeps_the_view_ranking_and_every_call():
    # Three classes, the positive side (BACTERIAL, VIRAL) re-estimated with different ratios: adjusting to the
    # estimate itself re-ranks the summed pneumonia score; the view-consistent prior does not.
    from scipy.stats import spearmanr

    from core.metrics.prior_shift import view_consistent_prior

    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=400)
    train, site = np.array([0.3, 0.45, 0.25]), np.array([0.5, 0.1, 0.4])
    positive = [1, 2]
    applied = view_consistent_prior(train, site, positive)
    assert applied.sum() == pytest.approx(1.0)
    assert applied[1:].sum() == pytest.approx(site[1:].sum()) and applied[1] / applied[2] == pytest.approx(0.45 / 0.25)
    before = probs[:, positive].sum(axis=1)
    raw = adjust_to_prior(probs, train, site)[:, positive].sum(axis=1)
    kept = adjust_to_prior(probs, train, applied)[:, positive].sum(axis=1)
    assert spearmanr(before, raw).statistic < 0.999  # the per-class estimate re-ranks the view
    assert spearmanr(before, kept).statistic == pytest.approx(1.0)
    cut = 0.55
    moved = adjust_threshold(cut, positive, train, applied)
    assert np.array_equal(before >= cut, kept >= moved)
    with pytest.raises(InputError, match="both sides"):
        view_consistent_prior(train, site, [0, 1, 2])
