"""Decision curves against the R dcurves package's outputs on its `df_binary` test data.

Expected values: dcurves (R) results stored as benchmarks by the Python dcurves project
(MSKCC-Epi-Bio/dcurves): `dcurves/data/r_dca_famhistory.csv` (dca(cancer ~ famhistory)) and
`tests/benchmark_data/r_case3_results.csv` (dca(cancer ~ marker, as_probability = "marker",
harm = list(marker = 0.0333)) with net_intervention_avoided()).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from core.errors import InputError
from core.metrics.decision_curve import decision_curve

DCA_BINARY = Path(__file__).parent / "data" / "reader_studies" / "dca_binary.csv"


@pytest.fixture(scope="module")
def df_binary() -> pd.DataFrame:
    return pd.read_csv(DCA_BINARY)


def row(curve: pd.DataFrame, threshold: float) -> pd.Series:
    return curve.loc[np.isclose(curve["threshold"], threshold)].iloc[0]


def test_famhistory_matches_dcurves_including_the_0_1_convention(df_binary):
    thresholds = np.round(np.arange(0, 101) / 100, 2)
    curve = decision_curve(df_binary["cancer"], df_binary["famhistory"], thresholds)
    # famhistory is 0/1: at threshold 0 a risk of 0 is still negative (tp 0.032, not 0.14).
    for t in (0.0, 0.5, 1.0):
        assert row(curve, t)["tp_rate"] == pytest.approx(0.032, abs=1e-15)
        assert row(curve, t)["fp_rate"] == pytest.approx(0.12133333333333335, abs=1e-15)
    expected = {0.0: 0.032, 0.01: 0.030774410774410774, 0.2: 0.0016666666666666635,
                0.21: -2.531645569620253e-4, 0.5: -0.08933333333333335, 0.65: -0.19333333333333338,
                0.99: -11.979999999999992}
    for t, value in expected.items():
        assert row(curve, t)["net_benefit"] == pytest.approx(value, rel=1e-9, abs=1e-15)
    assert row(curve, 1.0)["net_benefit"] == -math.inf
    treat_all = {0.0: 0.14, 0.01: 0.13131313131313133, 0.14: 0.0, 0.5: -0.72, 0.99: -84.99999999999993}
    for t, value in treat_all.items():
        assert row(curve, t)["net_benefit_all"] == pytest.approx(value, rel=1e-9, abs=1e-15)
    assert row(curve, 1.0)["net_benefit_all"] == -math.inf
    assert (curve["net_benefit_none"] == 0).all()


def test_harm_and_interventions_avoided_match_dcurves(df_binary):
    # as_probability = "marker": logistic regression of cancer on marker, as R's glm(binomial).
    design = sm.add_constant(df_binary[["marker"]])
    risk = sm.Logit(df_binary["cancer"], design).fit(disp=0).predict(design)
    curve = decision_curve(df_binary["cancer"], risk, np.round(np.arange(0, 36) / 100, 2), harm=0.0333)
    expected = {  # threshold: (tp_rate, fp_rate, net_benefit, net_intervention_avoided)
        0.07: (0.132, 0.7586666666666666, 0.04159605734767024, -0.44736666666666675),
        0.1: (0.10400000000000001, 0.37466666666666665, 0.02907037037037038, -0.13836666666666667),
        0.2: (0.05466666666666667, 0.10266666666666667, -0.004300000000000002, 0.28279999999999994),
        0.35: (0.024000000000000004, 0.032, -0.02653076923076923, 0.5507285714285713),
    }
    for t, (tp, fp, nb, avoided) in expected.items():
        got = row(curve, t)
        assert got["tp_rate"] == pytest.approx(tp, abs=1e-12)
        assert got["fp_rate"] == pytest.approx(fp, abs=1e-12)
        assert got["net_benefit"] == pytest.approx(nb, rel=1e-9)
        assert got["net_interventions_avoided"] == pytest.approx(avoided, rel=1e-9)
    assert row(curve, 0.0)["net_benefit"] == pytest.approx(0.10670000000000002)
    assert row(curve, 0.0)["net_interventions_avoided"] == -math.inf


def test_columns(df_binary):
    curve = decision_curve(df_binary["cancer"], df_binary["cancerpredmarker"], [0.1, 0.2])
    assert {"threshold", "net_benefit", "net_benefit_all", "net_benefit_none",
            "net_interventions_avoided"} <= set(curve.columns)
    assert len(curve) == 2


def test_prevalence_equal_to_the_sample_reproduces_the_cohort_curve(df_binary):
    thresholds = [0.05, 0.1, 0.2, 0.4]
    cohort = decision_curve(df_binary["cancer"], df_binary["cancerpredmarker"], thresholds)
    given = decision_curve(df_binary["cancer"], df_binary["cancerpredmarker"], thresholds, prevalence=0.14)
    pd.testing.assert_frame_equal(cohort, given, rtol=1e-12)


def test_case_control_rescales_by_the_population_prevalence(df_binary):
    y, risk = df_binary["casecontrol"].to_numpy(), df_binary["cancerpredmarker"].to_numpy()
    curve = decision_curve(y, risk, [0.15], prevalence=0.15)
    sens = (risk[y == 1] >= 0.15).mean()
    false_pos = (risk[y == 0] >= 0.15).mean()
    assert curve["net_benefit"].iloc[0] == pytest.approx(sens * 0.15 - false_pos * 0.85 * 0.15 / 0.85)
    assert curve["net_benefit_all"].iloc[0] == pytest.approx(0.0, abs=1e-15)   # prevalence = threshold


@pytest.mark.parametrize("kwargs, message", [
    ({"risk": [0.2, 1.5, 0.1]}, "risk must lie between 0 and 1"),
    ({"thresholds": [1.2]}, "thresholds must lie"),
    ({"harm": -0.1}, "harm must be"),
    ({"prevalence": 1.0}, "prevalence"),
])
def test_bad_input(kwargs, message):
    args = {"y_true": [0, 1, 1], "risk": [0.2, 0.6, 0.1], "thresholds": [0.1]}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        decision_curve(args.pop("y_true"), args.pop("risk"), args.pop("thresholds"), **args)


def test_penalty_threshold_from_the_kermany_matrix():
    from core.data.tasks import get_task
    from core.metrics.decision_curve import penalty_threshold

    task = get_task("oct-kermany")
    # Urgent (CNV, DME) vs the rest: a false referral costs 1; a missed CNV/DME costs 2 (called DRUSEN) to 4
    # (called NORMAL), so acting is worth it from a risk of 1/(1+4) = 0.2 to 1/(1+2) = 1/3.
    low, high = penalty_threshold(task.penalty(), task.classes, ("CNV", "DME"))
    assert (low, high) == pytest.approx((0.2, 1 / 3))
    two = np.array([[0.0, 1.0], [9.0, 0.0]])
    assert penalty_threshold(two, ["healthy", "sick"], ["sick"]) == pytest.approx((0.1, 0.1))
    assert penalty_threshold(np.array([[0.0, 0.0], [1.0, 0.0]]), ["a", "b"], ["b"]) is None
