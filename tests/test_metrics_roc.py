"""DeLong AUC and test against pROC's published aSAH outputs and a slow O(m n) reference; cached operating points."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from core.errors import InputError
from core.metrics import BinaryScores, delong_test, roc_auc


def slow_delong(truth, score_sets):
    """DeLong, DeLong & Clarke-Pearson (1988) written from the paper: explicit placement values, O(m n)."""
    truth = np.asarray(truth, bool)
    pos_sets = [np.asarray(s, float)[truth] for s in score_sets]
    neg_sets = [np.asarray(s, float)[~truth] for s in score_sets]
    v10, v01, aucs = [], [], []
    for pos, neg in zip(pos_sets, neg_sets):
        kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(kernel.mean())
        v10.append(kernel.mean(axis=1))
        v01.append(kernel.mean(axis=0))
    m, n = truth.sum(), (~truth).sum()
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    return np.array(aucs), np.atleast_2d(cov)


@pytest.fixture
def asah():
    # pROC's aSAH table, copied into tests/data with its source (see tests/data/README.md).
    table = pd.read_csv(Path(__file__).parent / "data" / "asah.csv")
    return table, (table["outcome"] == "Poor").to_numpy()


def test_asah_s100b_matches_proc(asah):
    # pROC: roc(aSAH$outcome, aSAH$s100b, ci = TRUE): AUC 0.7314, 95% CI 0.6301-0.8326 (DeLong).
    table, poor = asah
    auc = roc_auc(poor, table["s100b"])
    assert (round(auc.value, 4), round(auc.low, 4), round(auc.high, 4)) == (0.7314, 0.6301, 0.8326)
    assert auc.n_positive == 41 and auc.n_negative == 72 and auc.method == "DeLong"
    assert round(roc_auc(poor, table["wfns"]).value, 4) == 0.8237


def test_asah_roc_test_matches_proc(asah):
    # pROC: roc.test(roc(outcome, s100b), roc(outcome, wfns)): Z = -2.209, p-value = 0.02718.
    table, poor = asah
    result = delong_test(poor, table["s100b"], table["wfns"])
    assert round(result.z, 3) == -2.209 and round(result.p_value, 5) == 0.02718
    assert result.difference.value == pytest.approx(0.7313686 - 0.8236789, abs=1e-6)
    # pROC: roc.test(roc(outcome, s100b), roc(outcome, ndka)): Z = 1.3908, p-value = 0.1643.
    other = delong_test(poor, table["s100b"], table["ndka"])
    assert round(other.z, 4) == 1.3908 and round(other.p_value, 4) == 0.1643


def test_fast_delong_equals_slow_reference_with_ties():
    rng = np.random.default_rng(3)
    truth = rng.random(150) < 0.4
    a = np.round(rng.normal(size=150) + truth, 1)  # rounding makes many ties
    b = np.round(rng.normal(size=150) + 0.5 * truth + 0.3 * a, 1)
    aucs, cov = slow_delong(truth, [a, b])
    single = roc_auc(truth, a)
    assert single.value == pytest.approx(aucs[0]) and single.variance == pytest.approx(cov[0, 0])
    assert single.value == pytest.approx(roc_auc_score(truth, a))
    test = delong_test(truth, a, b)
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert test.z == pytest.approx(z) and test.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf(0.975) * math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert test.difference.low == pytest.approx(aucs[0] - aucs[1] - half)


def test_same_curve_against_itself():
    rng = np.random.default_rng(0)
    truth = rng.random(60) < 0.5
    scores = rng.normal(size=60) + truth
    result = delong_test(truth, scores, scores)
    assert result.z == 0.0 and result.p_value == 1.0 and result.difference.value == 0.0
    # A monotone transform ranks the cases identically: still no difference.
    assert delong_test(truth, scores, np.exp(scores)).p_value == 1.0


def test_too_few_cases_for_a_variance():
    single = roc_auc([0, 1, 0], [0.1, 0.2, 0.3])
    assert single.value == 0.5 and np.isnan(single.low) and "two positive" in single.reason
    assert delong_test([0, 1, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]).p_value == 1.0  # same curve: still p = 1
    assert np.isnan(delong_test([0, 1, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]).z)


def test_interval_clipped_and_degenerate_cases():
    perfect = roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.value == 1.0 and perfect.high == 1.0 and perfect.low <= 1.0
    one_class = roc_auc([1, 1, 1], [0.1, 0.5, 0.9])
    assert math.isnan(one_class.value) and "negative" in one_class.reason
    small = roc_auc([0, 1, 0, 1, 1], [0.9, 0.1, 0.8, 0.2, 0.3])
    assert 0.0 <= small.low <= small.value <= small.high <= 1.0


@pytest.mark.parametrize("truth, scores", [([0, 2, 1], [0.1, 0.2, 0.3]), ([0, 1], [0.1]),
                                           ([0, 1, 1], [0.1, float("nan"), 0.2]), ([[0, 1]], [[0.1, 0.2]])])
def test_bad_input_is_input_error(truth, scores):
    with pytest.raises(InputError):
        roc_auc(truth, scores)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=-20, max_value=20)), min_size=4, max_size=60),
       st.sampled_from(["exp", "cube", "affine"]))
def test_auc_invariant_to_monotone_transforms(cases, transform):
    truth = np.array([c[0] for c in cases])
    scores = np.array([c[1] for c in cases], float) / 4.0
    if truth.all() or not truth.any():
        return
    changed = {"exp": np.exp, "cube": lambda s: s ** 3 + s, "affine": lambda s: 3.0 * s - 7.0}[transform](scores)
    before, after = roc_auc(truth, scores), roc_auc(truth, changed)
    assert after.value == pytest.approx(before.value)
    assert after.variance == pytest.approx(before.variance, abs=1e-12, nan_ok=True)
    if truth.sum() >= 2 and (~truth).sum() >= 2:
        assert 0.0 <= before.low <= before.value <= before.high <= 1.0
    else:  # a variance needs two cases of each kind
        assert np.isnan(before.low) and before.reason


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_auc_interval_shrinks_with_more_cases(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(40) < 0.5
    truth[:2] = [True, False]
    scores = rng.normal(size=40) + truth
    small = roc_auc(truth, scores)
    # The same cases, each seen 9 times: same AUC, a third of the standard error (up to the ddof=1 factor).
    large = roc_auc(np.tile(truth, 9), np.tile(scores, 9))
    assert large.value == pytest.approx(small.value)
    if small.variance > 0 and small.value < 1:
        assert large.width < small.width


def brute_counts(truth, scores, threshold):
    called = scores >= threshold
    return (int((called & truth).sum()), int((called & ~truth).sum()),
            int((~called & truth).sum()), int((~called & ~truth).sum()))


def test_binary_scores_threshold_queries_match_brute_force():
    rng = np.random.default_rng(7)
    truth = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + 1.2 * truth, 2)
    cached = BinaryScores(truth, scores)
    for t in [-5, -0.5, 0.0, 0.37, 0.5, 1.0, 9.0, float(scores[10])]:
        point = cached.at_threshold(t)
        assert (point.tp, point.fp, point.fn, point.tn) == brute_counts(truth, scores, t)
    assert cached.auc().value == pytest.approx(roc_auc_score(truth, scores))
    candidates = np.r_[np.inf, np.unique(scores)]
    sens = np.array([brute_counts(truth, scores, t)[0] / truth.sum() for t in candidates])
    spec = np.array([brute_counts(truth, scores, t)[3] / (~truth).sum() for t in candidates])
    for target in (0.0, 0.5, 0.8, 0.9, 0.95, 1.0):
        point = cached.threshold_for_sensitivity(target)
        assert point.sensitivity >= target - 1e-12
        assert point.threshold == pytest.approx(candidates[sens >= target - 1e-12].max())
        point = cached.threshold_for_specificity(target)
        assert point.specificity >= target - 1e-12
        assert point.threshold == pytest.approx(candidates[spec >= target - 1e-12].min())
    best = cached.youden()
    assert best.sensitivity + best.specificity - 1 == pytest.approx((sens + spec - 1).max())
    curve = cached.curve()
    assert curve.fpr[0] == 0 and curve.tpr[-1] == 1 and np.all(np.diff(curve.fpr) >= 0)


def test_target_sensitivity_exactly_reachable():
    # 20 positives: 0.95 * 20 = 19 must need 19, not 20, true positives despite floating point.
    truth = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    scores = np.r_[np.arange(20) + 10.0, np.arange(20, dtype=float)]
    point = BinaryScores(truth, scores).threshold_for_sensitivity(0.95)
    assert point.tp == 19 and point.threshold == 11.0


def test_operating_point_metrics_and_bad_targets():
    cached = BinaryScores([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    point = cached.at_threshold(0.5)
    assert (point.tp, point.fp, point.fn, point.tn) == (1, 1, 1, 1)
    assert point.metrics().sensitivity.value == 0.5
    with pytest.raises(InputError):
        cached.threshold_for_sensitivity(1.5)
    with pytest.raises(InputError):
        cached.at_threshold("high")


def test_complete_separation_gives_a_one_sided_exact_bound_not_a_point():
    """AUC 1 has DeLong variance 0: "1.000 (95% CI 1.000 to 1.000)" is replaced by an exact one-sided bound."""
    from core.metrics.roc import SEPARATION_METHOD, roc_auc

    truth = np.r_[np.ones(50), np.zeros(50)]
    scores = np.r_[np.linspace(0.6, 1.0, 50), np.linspace(0.0, 0.4, 50)]
    auc = roc_auc(truth, scores)
    # Clopper-Pearson one-sided lower bound for 50/50 at alpha/2 = 0.025 is 0.025 ** (1/50) = 0.92889;
    # its square bounds the AUC.
    assert auc.value == 1.0 and auc.high == 1.0
    assert auc.low == pytest.approx(0.92889 ** 2, abs=1e-4) and auc.method == SEPARATION_METHOD
    from scipy.stats import beta
    assert auc.low == pytest.approx(beta.ppf(0.025, 50, 1) ** 2, rel=1e-9)
    reverse = roc_auc(truth, -scores)
    assert reverse.value == 0.0 and reverse.low == 0.0 and reverse.high == pytest.approx(1 - auc.low)
