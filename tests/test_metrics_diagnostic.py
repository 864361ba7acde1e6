"""2x2 diagnostic metrics and likelihood-ratio intervals (epiR, Koopman 1984, statsmodels cross-checks)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from core.errors import InputError
from core.metrics import diagnostic_metrics, koopman_statistic, ratio_ci


def test_epir_vignette_example():
    # epiR::epi.tests(as.table(matrix(c(670, 202, 74, 640), nrow = 2, byrow = TRUE))): exact intervals, log LRs.
    m = diagnostic_metrics(670, 202, 74, 640, ci="exact", lr_ci="log")
    expected = {"sensitivity": (0.90, 0.88, 0.92), "specificity": (0.76, 0.73, 0.79), "ppv": (0.77, 0.74, 0.80),
                "npv": (0.90, 0.87, 0.92), "accuracy": (0.83, 0.81, 0.84),
                "lr_positive": (3.75, 3.32, 4.24), "lr_negative": (0.13, 0.11, 0.16)}
    for name, (value, low, high) in expected.items():
        got = getattr(m, name)
        assert (round(got.value, 2), round(got.low, 2), round(got.high, 2)) == (value, low, high), name


def test_hand_computed_rates_and_log_lr():
    m = diagnostic_metrics(tp=40, fp=10, fn=10, tn=90)
    assert m.sensitivity.value == 0.8 and m.specificity.value == 0.9
    assert m.ppv.value == 0.8 and m.npv.value == 0.9 and m.accuracy.value == 130 / 150
    assert m.lr_positive.value == pytest.approx(8.0) and m.lr_negative.value == pytest.approx(0.2 / 0.9)
    se = math.sqrt(1 / 40 - 1 / 50 + 1 / 10 - 1 / 100)  # Simel, Samsa & Matchar (1991)
    z = stats.norm.ppf(0.975)
    assert m.lr_positive.low == pytest.approx(8.0 * math.exp(-z * se))
    assert m.lr_positive.high == pytest.approx(8.0 * math.exp(z * se))
    se_neg = math.sqrt(1 / 10 - 1 / 50 + 1 / 90 - 1 / 100)
    assert m.lr_negative.high == pytest.approx(0.2 / 0.9 * math.exp(z * se_neg))
    assert m.n == 150 and m.prevalence == pytest.approx(50 / 150)
    assert m.balanced_accuracy == pytest.approx(0.85) and m.youden_j == pytest.approx(0.7)


def test_adjusted_log_adds_half_to_counts_and_totals():
    m = diagnostic_metrics(40, 10, 10, 90, lr_ci="adjusted_log")
    ratio = (40.5 / 50.5) / (10.5 / 100.5)
    se = math.sqrt(1 / 40.5 - 1 / 50.5 + 1 / 10.5 - 1 / 100.5)
    z = stats.norm.ppf(0.975)
    assert m.lr_positive.value == pytest.approx(8.0)  # the reported estimate stays sens / (1 - spec)
    assert m.lr_positive.low == pytest.approx(ratio * math.exp(-z * se))
    assert m.lr_positive.high == pytest.approx(ratio * math.exp(z * se))


def test_adjusted_log_matches_contingencytables_perondi_example():
    # Fagerland, Lydersen & Laake (2015), contingencytables' Adjusted_log_CI_2x2 on Perondi et al. (2004):
    # 7/34 vs 1/34, 95% interval 0.9241 to 27.0523 for the ratio of probabilities.
    ci = ratio_ci(7, 34, 1, 34, method="adjusted_log")
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.9241, 27.0523)
    lr = diagnostic_metrics(tp=7, fp=1, fn=27, tn=33, lr_ci="adjusted_log").lr_positive
    assert (round(lr.low, 4), round(lr.high, 4)) == (0.9241, 27.0523)


def test_koopman_published_example():
    # Koopman PAS, Biometrics 40:513 (1984): 36/40 vs 16/80, 95% interval 2.94 to 7.15 for the ratio 4.5.
    ci = ratio_ci(36, 40, 16, 80, method="koopman")
    assert ci.value == pytest.approx(4.5)
    assert (round(ci.low, 3), round(ci.high, 3)) == (2.940, 7.152)


@pytest.mark.parametrize("x1, n1, x2, n2", [(36, 40, 16, 80), (670, 744, 202, 842), (74, 744, 640, 842),
                                            (3, 17, 12, 25), (45, 50, 5, 60), (10, 10, 3, 20)])
def test_koopman_matches_statsmodels_score_without_correction(x1, n1, x2, n2):
    ours = ratio_ci(x1, n1, x2, n2, method="koopman")
    low, high = confint_proportions_2indep(x1, n1, x2, n2, compare="ratio", method="score", correction=False)
    assert ours.low == pytest.approx(low, rel=1e-6) and ours.high == pytest.approx(high, rel=1e-6)


@pytest.mark.parametrize("x1, n1, x2, n2", [(36, 40, 16, 80), (1, 1000, 999, 1000), (10, 10, 20, 20),
                                            (5, 10, 0, 20), (0, 10, 3, 20), (2, 3, 1, 4)])
def test_koopman_roots_solve_the_score_equation(x1, n1, x2, n2):
    critical = stats.chi2.ppf(0.95, 1)
    ci = ratio_ci(x1, n1, x2, n2, method="koopman")
    for root in (ci.low, ci.high):
        if 0 < root < math.inf:
            assert koopman_statistic(root, x1, n1, x2, n2) == pytest.approx(critical, rel=1e-8)


def test_specificity_one_gives_infinite_lr_and_finite_koopman_lower_limit():
    koop = diagnostic_metrics(tp=20, fp=0, fn=5, tn=30, lr_ci="koopman")
    assert koop.lr_positive.value == math.inf and koop.lr_positive.high == math.inf
    assert 1.0 < koop.lr_positive.low < math.inf and koop.lr_positive.reason
    with np.errstate(divide="ignore"):  # statsmodels divides by zero on its way to the infinite upper limit
        low, _ = confint_proportions_2indep(20, 25, 0, 30, compare="ratio", method="score", correction=False)
    assert koop.lr_positive.low == pytest.approx(low, rel=1e-6)
    log = diagnostic_metrics(tp=20, fp=0, fn=5, tn=30, lr_ci="log")
    # The log interval is undefined with a zero cell: it switches to the Koopman bound and says so (it showed
    # "LR+ infinity" with no interval).
    assert log.lr_positive.value == math.inf and log.lr_positive.low == pytest.approx(low, rel=1e-6)
    assert log.lr_positive.high == math.inf and "zero cell" in log.lr_positive.method
    adjusted = diagnostic_metrics(tp=20, fp=0, fn=5, tn=30, lr_ci="adjusted_log")
    assert math.isfinite(adjusted.lr_positive.high) and adjusted.lr_positive.reason


def test_sensitivity_one_gives_zero_lr_negative():
    m = diagnostic_metrics(tp=25, fp=3, fn=0, tn=30, lr_ci="koopman")
    assert m.lr_negative.value == 0.0 and m.lr_negative.low == 0.0 and 0 < m.lr_negative.high < 1


def test_degenerate_tables_never_crash():
    for counts in [(0, 0, 0, 0), (5, 0, 0, 0), (0, 5, 0, 0), (0, 0, 5, 0), (0, 0, 0, 5), (0, 3, 0, 4)]:
        for lr_ci in ("log", "koopman", "adjusted_log"):
            m = diagnostic_metrics(*counts, lr_ci=lr_ci)
            for name, interval in m.rates().items():
                undefined = math.isnan(interval.value) or math.isnan(interval.low) or math.isinf(interval.value)
                assert not undefined or interval.reason, (counts, lr_ci, name)
    empty = diagnostic_metrics(0, 0, 0, 0)
    assert math.isnan(empty.sensitivity.value) and "sensitivity" in empty.sensitivity.reason
    both_zero = diagnostic_metrics(0, 0, 5, 5, lr_ci="koopman")  # sens 0 and 1 - spec 0: LR+ is 0/0
    assert math.isnan(both_zero.lr_positive.value) and both_zero.lr_positive.reason


@pytest.mark.parametrize("bad", [dict(tp=-1, fp=1, fn=1, tn=1), dict(tp=1.5, fp=1, fn=1, tn=1),
                                 dict(tp=1, fp=1, fn=1, tn=1, ci="wald"), dict(tp=1, fp=1, fn=1, tn=1, lr_ci="x")])
def test_bad_input_is_input_error(bad):
    with pytest.raises(InputError):
        diagnostic_metrics(**bad)


cells = st.integers(min_value=1, max_value=400)


@settings(max_examples=80, deadline=None)
@given(cells, cells, cells, cells, st.sampled_from(["log", "koopman"]))
def test_lr_intervals_contain_the_estimate(tp, fp, fn, tn, method):
    m = diagnostic_metrics(tp, fp, fn, tn, lr_ci=method)
    for lr in (m.lr_positive, m.lr_negative):
        assert 0 < lr.low <= lr.value * (1 + 1e-9) and lr.value <= lr.high * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=30),
       st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=30),
       st.sampled_from(["log", "koopman", "adjusted_log"]))
def test_lr_intervals_shrink_with_n(tp, fp, fn, tn, method):
    small = diagnostic_metrics(tp, fp, fn, tn, lr_ci=method).lr_positive
    large = diagnostic_metrics(10 * tp, 10 * fp, 10 * fn, 10 * tn, lr_ci=method).lr_positive
    assert math.log(large.high / large.low) < math.log(small.high / small.low)
