"""Subgroup analysis (core/metrics/subgroups.py): aSAH split by gender against an independent computation, and
built data with a known subgroup gap."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.metrics.subgroups import (MISSING_VALUE, SMALL_GROUP, holm_adjusted, subgroup_labels, subgroup_table)


@pytest.fixture(scope="module")
def asah():
    table = pd.read_csv(Path(__file__).parent / "data" / "asah.csv")
    return table, (table["outcome"] == "Poor").to_numpy()


def _delong_by_definition(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC as the Mann-Whitney statistic and DeLong's variance written out from its definition (DeLong, DeLong &
    Clarke-Pearson 1988): psi(x, y) = 1 if x > y, 1/2 if equal, 0 otherwise over every positive-negative pair;
    V10_i = mean_j psi(x_i, y_j), V01_j = mean_i psi(x_i, y_j); var = s^2(V10)/m + s^2(V01)/n."""
    x, y = scores[truth], scores[~truth]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    return float(u / (x.size * y.size)), float(v10.var(ddof=1) / x.size + v01.var(ddof=1) / y.size)


def test_asah_by_gender_matches_an_independent_delong(asah):
    table, poor = asah
    result = subgroup_table("gender", table["gender"], poor, table["s100b"], table["s100b"] >= 0.205)
    rows = {r.value: r for r in result.rows}
    assert list(rows) == ["Female", "Male"]
    # An independent reference (no published per-gender AUC of pROC's example was found): Mann-Whitney U and
    # DeLong's variance from its definition, pair by pair.
    for value, row in rows.items():
        inside = (table["gender"] == value).to_numpy()
        auc, variance = _delong_by_definition(poor[inside], table["s100b"].to_numpy()[inside])
        assert row.n == int(inside.sum()) and row.n_positive == int(poor[inside].sum())
        assert row.auc.value == pytest.approx(auc, abs=1e-12)
        assert row.auc.variance == pytest.approx(variance, rel=1e-10)
        half = stats.norm.ppf(0.975) * math.sqrt(variance)
        assert (row.auc.low, row.auc.high) == pytest.approx((auc - half, min(1.0, auc + half)), abs=1e-10)
    female, male = rows["Female"], rows["Male"]
    woman = (table["gender"] == "Female").to_numpy()
    a_f, v_f = _delong_by_definition(poor[woman], table["s100b"].to_numpy()[woman])
    a_m, v_m = _delong_by_definition(poor[~woman], table["s100b"].to_numpy()[~woman])
    z = (a_f - a_m) / math.sqrt(v_f + v_m)
    # Two groups: each one's rest is the other, so the unpaired DeLong test is pROC's roc.test(paired = FALSE).
    assert female.auc_gap.value == pytest.approx(a_f - a_m, abs=1e-12)
    assert female.auc_test.statistic == pytest.approx(z, rel=1e-10)
    assert female.auc_test.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    assert male.auc_test.p_value == pytest.approx(female.auc_test.p_value, rel=1e-12)
    # With k = 2 the chi-square of equal AUCs is z squared on one degree of freedom.
    assert result.heterogeneity["auc"].statistic == pytest.approx(z * z, rel=1e-10)
    assert result.heterogeneity["auc"].df == 1
    assert result.heterogeneity["auc"].p_value == pytest.approx(female.auc_test.p_value, rel=1e-10)
    # Holm over two equal p-values: both doubled (capped at 1).
    assert female.auc_p_adjusted == pytest.approx(min(1.0, 2 * female.auc_test.p_value))
    assert result.correction == "Holm"


def test_sensitivity_gap_and_its_test_are_those_of_the_two_by_two_table(asah):
    table, poor = asah
    called = (table["s100b"] >= 0.205).to_numpy()
    result = subgroup_table("gender", table["gender"], poor, table["s100b"], called)
    female = result.rows[0]
    inside = (table["gender"] == "Female").to_numpy()
    tp_f, n_f = int((called & poor & inside).sum()), int((poor & inside).sum())
    tp_m, n_m = int((called & poor & ~inside).sum()), int((poor & ~inside).sum())
    assert female.sensitivity.value == pytest.approx(tp_f / n_f)
    assert female.sensitivity.method == "Wilson score"
    assert female.sensitivity_gap.value == pytest.approx(tp_f / n_f - tp_m / n_m)
    assert female.sensitivity_gap.low < female.sensitivity_gap.value < female.sensitivity_gap.high
    chi2, p, _, _ = stats.chi2_contingency([[tp_f, n_f - tp_f], [tp_m, n_m - tp_m]], correction=False)
    assert female.sensitivity_test.p_value == pytest.approx(p)
    assert result.heterogeneity["sensitivity"].statistic == pytest.approx(chi2)


def _built(seed: int = 0, n: int = 2000):
    """Site A: the score separates the classes (AUC about 0.92); site B: the score is noise. A third column is
    assigned at random (no gap), and a tiny site C holds 5 positives."""
    rng = np.random.default_rng(seed)
    site = np.where(rng.random(n) < 0.5, "A", "B")
    site[:30] = "C"
    truth = rng.random(n) < 0.4
    score = np.where(site == "B", rng.normal(size=n), rng.normal(size=n) + 2.0 * truth)
    truth[:30] = np.arange(30) < 5
    random_column = rng.choice(["x", "y", "z"], size=n)
    return site, random_column, truth, score


def test_a_built_gap_is_found_and_a_random_split_is_not():
    site, random_column, truth, score = _built()
    called = score >= 1.0
    result = subgroup_table("site", site, truth, score, called)
    rows = {r.value: r for r in result.rows}
    assert rows["A"].auc.value > 0.85 and rows["B"].auc.value == pytest.approx(0.5, abs=0.05)
    assert rows["B"].auc_gap.high < 0 < rows["A"].auc_gap.low
    assert rows["B"].auc_p_adjusted < 0.001
    assert result.heterogeneity["auc"].p_value < 1e-10
    assert result.heterogeneity["sensitivity"].p_value < 1e-10
    # The small site is kept, with its intervals, and flagged.
    assert rows["C"].small and rows["C"].n_positive == 5 < SMALL_GROUP
    assert math.isfinite(rows["C"].sensitivity.low) and rows["C"].n == 30
    assert not rows["A"].small and not rows["B"].small
    null = subgroup_table("random", random_column, truth, score, called)
    assert all(r.auc_p_adjusted > 0.05 for r in null.rows)
    assert null.heterogeneity["auc"].p_value > 0.05


def test_weighted_error_per_subgroup_resamples_patients():
    rng = np.random.default_rng(1)
    n = 400
    group = np.repeat(["good", "bad"], n // 2)
    truth = rng.integers(0, 2, size=n)
    calls = np.where(group == "good", truth, 1 - truth)  # always right in one group, always wrong in the other
    probs = np.column_stack([1 - calls * 0.8 - 0.1, calls * 0.8 + 0.1])
    patients = np.arange(n) // 2
    penalty = np.array([[0.0, 1.0], [1.0, 0.0]])
    result = subgroup_table("group", group, truth == 1, probs[:, 1], calls == 1, truth=truth, probabilities=probs,
                            calls=calls, penalty=penalty, patient_ids=patients, n_resamples=50)
    rows = {r.value: r for r in result.rows}
    assert rows["good"].weighted_error.value == 0.0 and rows["bad"].weighted_error.value == 1.0
    assert "patients" in rows["bad"].weighted_error.method
    assert rows["good"].n_patients == 100
    assert result.overall_weighted_error.value == pytest.approx(0.5)
    by_value = [(r["value"], r["weighted_error"]["value"]) for r in result.to_dict()["rows"]]
    assert by_value == [("bad", 1.0), ("good", 0.0)]


def test_numeric_columns_are_binned_and_blanks_kept_as_their_own_group():
    labels, how = subgroup_labels([str(v) for v in range(100)] + ["", None])
    assert "quantile" in how
    assert labels[0] == "[0, 24.75)" and labels[99] == "[74.25, 99]"
    assert list(labels[-2:]) == [MISSING_VALUE, MISSING_VALUE]
    few, how_few = subgroup_labels(["1", "2", "1"])
    assert how_few == "" and list(few) == ["1", "2", "1"]


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, float("nan")]
    adjusted = holm_adjusted(p)
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone.
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


def test_a_single_value_column_says_there_is_nothing_to_compare(asah):
    table, poor = asah
    result = subgroup_table("all", ["one"] * len(table), poor, table["s100b"], table["s100b"] >= 0.205)
    assert len(result.rows) == 1 and "single value" in result.notes[-1]
    assert math.isnan(result.rows[0].auc_test.p_value) and result.rows[0].auc_gap.reason


def test_a_completely_separated_group_is_still_compared():
    rng = np.random.default_rng(3)
    n = 400
    group = np.repeat(["perfect", "noise"], n // 2)
    truth = rng.random(n) < 0.5
    score = np.where(group == "perfect", truth + 0.1 * rng.random(n), rng.random(n))
    result = subgroup_table("group", group, truth, score, score >= 0.5)
    rows = {r.value: r for r in result.rows}
    assert rows["perfect"].auc.value == 1.0 and rows["perfect"].auc.variance == 0.0
    # DeLong's variance is 0 there; the exact one-sided bound stands in, so the gap and the test exist.
    assert rows["perfect"].auc_test.p_value < 1e-6 and "separates completely" in rows["perfect"].auc_test.reason
    assert result.heterogeneity["auc"].df == 1 and result.heterogeneity["auc"].p_value < 1e-6


def test_a_column_dominated_by_one_value_is_still_cut_into_several_ranges():
    widths = [512] * 300 + [428, 440, 452, 470, 480, 490, 500, 505, 510] * 5
    labels, how = subgroup_labels(widths)
    assert len(set(labels)) >= 3 and "quantile" in how
    assert labels[0] == "[500, 512]" and labels[300] == "[428, 452)"
