"""Proportion intervals against published values (Newcombe 1998; R binom.confint) and their properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from core.errors import InputError
from core.metrics import Interval, proportion_ci
from core.metrics.intervals import proportion_ci_arrays

# Newcombe RG, Stat Med 17:857 (1998), Table II: Wilson (method 3) and Clopper-Pearson (method 5).
NEWCOMBE = [
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize("x, n, wilson, exact", NEWCOMBE)
def test_newcombe_table(x, n, wilson, exact):
    w = proportion_ci(x, n, "wilson")
    e = proportion_ci(x, n, "exact")
    assert (round(w.low, 4), round(w.high, 4)) == wilson
    assert (round(e.low, 4), round(e.high, 4)) == exact
    assert w.value == e.value == x / n


def test_binom_confint_example():
    # R: binom::binom.confint(x = c(2, 4), n = 100, methods = c("exact", "wilson"))
    assert proportion_ci(2, 100, "exact").low == pytest.approx(0.002431337, abs=1e-9)
    assert proportion_ci(2, 100, "exact").high == pytest.approx(0.07038393, abs=1e-8)
    assert proportion_ci(2, 100, "wilson").low == pytest.approx(0.005501968, abs=1e-9)
    assert proportion_ci(2, 100, "wilson").high == pytest.approx(0.07001179, abs=1e-8)
    assert proportion_ci(4, 100, "exact").low == pytest.approx(0.011004494, abs=1e-9)
    assert proportion_ci(4, 100, "exact").high == pytest.approx(0.09925716, abs=1e-8)


def test_wilson_matches_closed_form():
    x, n, z = 37, 52, stats.norm.ppf(0.975)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    ci = proportion_ci(x, n)
    assert ci.low == pytest.approx(centre - half, rel=1e-12)
    assert ci.high == pytest.approx(centre + half, rel=1e-12)


def test_exact_is_clopper_pearson_with_half_alpha_per_tail():
    ci = proportion_ci(7, 30, "exact", confidence=0.9)
    assert stats.binom.sf(6, 30, ci.low) == pytest.approx(0.05, abs=1e-9)   # P(X >= 7 | low) = alpha/2
    assert stats.binom.cdf(7, 30, ci.high) == pytest.approx(0.05, abs=1e-9)  # P(X <= 7 | high) = alpha/2


def test_exact_boundaries_are_zero_and_one():
    assert proportion_ci(0, 10, "exact").low == 0.0
    assert proportion_ci(10, 10, "exact").high == 1.0
    assert proportion_ci(10, 10, "exact").low == pytest.approx(0.025 ** (1 / 10))


def test_empty_denominator_is_nan_with_reason():
    ci = proportion_ci(0, 0)
    assert math.isnan(ci.value) and math.isnan(ci.low) and ci.reason


@pytest.mark.parametrize("bad", [dict(x=5, n=3), dict(x=-1, n=3), dict(x=1.5, n=3), dict(x=1, n=3, method="wald"),
                                 dict(x=1, n=3, confidence=1.0), dict(x="a", n=3)])
def test_bad_input_is_input_error(bad):
    with pytest.raises(InputError):
        proportion_ci(**bad)


def test_vectorised_matches_scalar():
    xs, ns = [0, 3, 10, 0], [10, 20, 10, 0]
    for method in ("wilson", "exact"):
        value, low, high = proportion_ci_arrays(xs, ns, method)
        for i, (x, n) in enumerate(zip(xs, ns)):
            one = proportion_ci(x, n, method)
            for got, want in ((value[i], one.value), (low[i], one.low), (high[i], one.high)):
                assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_interval_str_and_contains():
    ci = Interval(0.5, 0.4, 0.6, "Wilson score")
    assert ci.contains(0.45) and not ci.contains(0.7)
    assert "Wilson" in str(ci)


counts = st.integers(min_value=1, max_value=2000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@settings(max_examples=150, deadline=None)
@given(counts, st.sampled_from(["wilson", "exact"]), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_contains_estimate_and_stays_in_range(xn, method, confidence):
    x, n = xn
    ci = proportion_ci(x, n, method, confidence)
    assert 0.0 <= ci.low <= ci.value <= ci.high <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=20),
       st.sampled_from(["wilson", "exact"]))
def test_interval_shrinks_with_n(successes, scale, method):
    # Same observed proportion, more data: a narrower interval.
    small = proportion_ci(successes, 2 * successes, method)
    large = proportion_ci(successes * (scale + 1), 2 * successes * (scale + 1), method)
    assert large.width < small.width


@settings(max_examples=60, deadline=None)
@given(counts, st.sampled_from(["wilson", "exact"]))
def test_higher_confidence_is_wider(xn, method):
    x, n = xn
    assert proportion_ci(x, n, method, 0.99).width >= proportion_ci(x, n, method, 0.9).width
