"""McNemar (Fagerland 2013 example, statsmodels) and Cohen's kappa (SAS PROC FREQ example, Fleiss-Cohen-Everitt)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar

from core.errors import InputError
from core.metrics import cohen_kappa, compare_correctness, kappa_from_table, mcnemar_test


def test_mcnemar_fagerland_example():
    # Fagerland, Lydersen & Laake, BMC Med Res Methodol 13:91 (2013): b = 1, c = 7.
    assert round(mcnemar_test(1, 7, "exact").p_value, 3) == 0.070
    assert round(mcnemar_test(1, 7, "mid_p").p_value, 3) == 0.039
    assert round(mcnemar_test(1, 7, "asymptotic").p_value, 3) == 0.034
    assert mcnemar_test(1, 7, "asymptotic").statistic == pytest.approx(4.5)


@pytest.mark.parametrize("b, c", [(3, 9), (10, 2), (25, 15), (40, 41)])
def test_mcnemar_matches_statsmodels(b, c):
    table = [[50, b], [c, 30]]
    assert mcnemar_test(b, c, "exact").p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    ref = mcnemar(table, exact=False, correction=False)
    ours = mcnemar_test(b, c, "asymptotic")
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(ref.pvalue)
    ref_cc = mcnemar(table, exact=False, correction=True)
    assert mcnemar_test(b, c, "asymptotic_cc").p_value == pytest.approx(ref_cc.pvalue)


def test_mcnemar_no_discordant_pairs_gives_p_one():
    for method in ("exact", "mid_p", "asymptotic", "asymptotic_cc"):
        result = mcnemar_test(0, 0, method)
        assert result.p_value == 1.0 and result.reason


def test_mcnemar_bad_input():
    with pytest.raises(InputError):
        mcnemar_test(-1, 3)
    with pytest.raises(InputError):
        mcnemar_test(1, 3, "fisher")


def test_compare_correctness_counts_discordant_pairs():
    truth = np.array(["A", "B", "A", "B", "A"])
    model = np.array(["A", "B", "B", "B", "A"])
    reader = np.array(["A", "A", "A", "A", "B"])
    result = compare_correctness(truth, model, reader)
    assert (result.b, result.c) == (3, 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=80), st.integers(min_value=0, max_value=80))
def test_mcnemar_p_values_are_probabilities_and_symmetric(b, c):
    for method in ("exact", "mid_p", "asymptotic", "asymptotic_cc"):
        p = mcnemar_test(b, c, method).p_value
        assert 0.0 <= p <= 1.0 and p == pytest.approx(mcnemar_test(c, b, method).p_value)
    assert mcnemar_test(b, c, "mid_p").p_value <= mcnemar_test(b, c, "exact").p_value + 1e-12


# SAS/STAT PROC FREQ documentation, "Agreement study" (two dermatologists, four categories).
SAS_TABLE = np.array([[10, 4, 1, 0], [5, 10, 12, 2], [2, 4, 12, 5], [0, 2, 6, 13]])


def test_simple_kappa_matches_sas_example():
    result = kappa_from_table(SAS_TABLE)
    assert round(result.value, 4) == 0.3449 and round(result.se, 4) == 0.0724
    assert (round(result.kappa.low, 4), round(result.kappa.high, 4)) == (0.2030, 0.4868)


def fleiss_cohen_everitt(table, disagreement):
    """Weighted kappa and both SEs written out from Fleiss, Cohen & Everitt, Psychol Bull 72:323 (1969)."""
    p = table / table.sum()
    n = table.sum()
    w = 1.0 - disagreement / disagreement.max()  # agreement weights
    row, col = p.sum(axis=1), p.sum(axis=0)
    po, pe = (w * p).sum(), (w * np.outer(row, col)).sum()
    kappa = (po - pe) / (1 - pe)
    w_row = w @ col        # w-bar_i.
    w_col = row @ w        # w-bar_.j
    core = w - (w_row[:, None] + w_col[None, :]) * (1 - kappa)
    var = ((p * core ** 2).sum() - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    var0 = ((np.outer(row, col) * (w - (w_row[:, None] + w_col[None, :])) ** 2).sum() - pe ** 2) / (n * (1 - pe) ** 2)
    return kappa, math.sqrt(var), math.sqrt(var0)


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weighted_kappa_standard_errors_follow_fleiss_cohen_everitt(weights):
    i, j = np.indices(SAS_TABLE.shape)
    disagreement = np.abs(i - j) if weights == "linear" else (i - j) ** 2
    kappa, se, se0 = fleiss_cohen_everitt(SAS_TABLE.astype(float), disagreement.astype(float))
    result = kappa_from_table(SAS_TABLE, weights=weights)
    assert result.value == pytest.approx(kappa) and result.se == pytest.approx(se)
    assert result.se_null == pytest.approx(se0)
    assert result.z == pytest.approx(kappa / se0)  # as irr::kappa2: z uses the SE under H0
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(kappa / se0)))
    assert result.kappa.low == pytest.approx(kappa - stats.norm.ppf(0.975) * se)


def test_kappa_point_estimates_match_sklearn():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 5, 300)
    b = np.clip(a + rng.integers(-1, 2, 300), 0, 4)
    for weights in (None, "linear", "quadratic"):
        assert cohen_kappa(a, b, weights).value == pytest.approx(cohen_kappa_score(a, b, weights=weights))


def test_unused_grade_counts_in_the_weights_when_labels_given():
    # Grade 2 is never used; without labels, grades 1 and 3 would look adjacent.
    a = np.array([0, 1, 3, 4, 1, 3, 0, 4, 1, 3])
    b = np.array([0, 3, 1, 4, 1, 3, 1, 4, 3, 3])
    with_labels = cohen_kappa(a, b, "quadratic", labels=[0, 1, 2, 3, 4])
    assert with_labels.value == pytest.approx(cohen_kappa_score(a, b, weights="quadratic", labels=[0, 1, 2, 3, 4]))
    assert with_labels.table.shape == (5, 5) and with_labels.table[2].sum() == 0
    without = cohen_kappa(a, b, "quadratic")
    assert without.table.shape == (4, 4) and without.value != pytest.approx(with_labels.value)


def test_kappa_string_labels_and_undefined_case():
    result = cohen_kappa(["CNV", "DME", "CNV"], ["CNV", "DME", "DME"], labels=["CNV", "DME", "DRUSEN"])
    assert result.labels == ("CNV", "DME", "DRUSEN")
    same = cohen_kappa(["x"] * 5, ["x"] * 5)
    assert math.isnan(same.value) and same.reason
    with pytest.raises(InputError):
        cohen_kappa([0, 1], [0, 7], labels=[0, 1])
    with pytest.raises(InputError):
        cohen_kappa([0, 1], [0])
    with pytest.raises(InputError):
        cohen_kappa([0, 1], [0, 1], weights="cubic")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=5, max_size=80),
       st.sampled_from([None, "linear", "quadratic"]))
def test_kappa_interval_contains_estimate(pairs, weights):
    a, b = np.array(pairs).T
    result = cohen_kappa(a, b, weights, labels=range(4))
    if not math.isnan(result.value) and math.isnan(result.kappa.low):
        assert result.kappa.reason.startswith("no interval")  # never a zero-width interval
    elif not math.isnan(result.value):
        assert -1.0 <= result.kappa.low < result.kappa.high <= 1.0
        assert result.kappa.low <= result.value <= result.kappa.high


def test_kappa_with_one_rater_constant_says_why_there_is_no_interval():
    """It showed "kappa 0.00 (0.00 to 0.00)"."""
    result = cohen_kappa(["a"] * 6 + ["b"] * 4, ["a"] * 10)
    assert result.value == 0.0 and math.isnan(result.kappa.low) and math.isnan(result.kappa.high)
    assert "single category" in result.kappa.reason
