"""MRMC (Obuchowski-Rockette / Hillis) analysis against the published outputs on the Van Dyke (1993) data.

Sources of the expected numbers (each printed by the software's authors on this exact data):
- RJ  = RJafroc, Chakraborty's book "RJafrocBook", chapter "Obuchowski Rockette Applications"
        (docs/10C-OR-AnalysisApplications.md: hand calculation and StSignificanceTesting on dataset02).
- MA  = MRMCaov (Smith & Hillis), package article docs/jss/MRMCaov.tex and the User Guide
        (summary(mrmc(...)) on the VanDyke data; case2 / case3 codings for the nested designs).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.metrics.mrmc import describe_difference, mrmc_analysis

VANDYKE = Path(__file__).parent / "data" / "reader_studies" / "vandyke.csv"


def printed(value: float, text: str) -> bool:
    """True when `value` rounds to the number printed as `text` (its last printed digit, half a unit)."""
    unit = 10.0 ** Decimal(text).as_tuple().exponent
    return abs(float(value) - float(text)) <= 0.5 * unit * (1 + 1e-9)


def check(value, text):
    assert printed(value, text), f"{value!r} does not round to the published {text}"


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    return pd.read_csv(VANDYKE)


@pytest.fixture(scope="module")
def jackknife(vandyke):
    return mrmc_analysis(vandyke).to_dict()


def test_to_dict_has_exactly_the_documented_keys(jackknife):
    assert set(jackknife) == {"treatments", "variance_components", "rrrc", "frrc", "rrfc"}
    assert set(jackknife["variance_components"]) == {"var_R", "var_TR", "var_error", "cov1", "cov2", "cov3"}
    assert {"F", "df_num", "df_den", "p", "diff", "stderr", "ci95", "pairs", "treatments"} <= set(jackknife["rrrc"])
    assert {"chi2", "df", "p", "stderr", "ci95", "treatments"} <= set(jackknife["frrc"])
    assert {"F", "df_num", "df_den", "p", "stderr", "ci95", "treatments"} <= set(jackknife["rrfc"])
    assert set(jackknife["treatments"]) == {"1", "2"}
    assert set(jackknife["treatments"]["1"]["readers"]) == {"1", "2", "3", "4", "5"}


def test_result_is_frozen(vandyke):
    result = mrmc_analysis(vandyke)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.figure = "sensitivity"


def test_reader_figures_match_rjafroc(jackknife):
    # RJ: foms, digits = 4.
    expected = {"1": ["0.9196", "0.8588", "0.9039", "0.9731", "0.8298"],
                "2": ["0.9478", "0.9053", "0.9217", "0.9994", "0.9300"]}
    for treatment, values in expected.items():
        readers = jackknife["treatments"][treatment]["readers"]
        for reader, text in zip(("1", "2", "3", "4", "5"), values):
            check(readers[reader], text)
    check(jackknife["treatments"]["1"]["mean"], "0.8970")
    check(jackknife["treatments"]["2"]["mean"], "0.9408")


def test_jackknife_variance_components_match_mrmcaov(jackknife):
    # MA, fixed-readers summary (jackknife): the components printed to 7-8 significant digits.
    vc = jackknife["variance_components"]
    check(vc["var_R"], "0.0015349993")
    check(vc["var_TR"], "0.0002004025")
    check(vc["var_error"], "0.0008022883")
    check(vc["cov1"], "0.0003466137")
    check(vc["cov2"], "0.0003440748")
    check(vc["cov3"], "0.0002390284")


def test_rrrc_jackknife_matches_rjafroc(jackknife):
    rrrc = jackknife["rrrc"]
    check(rrrc["F"], "4.456")            # the reference, RJ F_ORH_RRRC
    check(rrrc["df_den"], "15.26")       # RJ ddf
    check(rrrc["p"], "0.05167")          # RJ p
    assert rrrc["df_num"] == 1
    check(rrrc["diff"], "-0.0438")
    check(rrrc["stderr"], "0.0207")
    check(rrrc["ci95"][0], "-0.0879595")
    check(rrrc["ci95"][1], "0.0003589")
    one, two = rrrc["treatments"]["1"], rrrc["treatments"]["2"]
    for got, (se, df, low, high) in ((one, ("0.03317", "12.74", "0.8252", "0.9689")),
                                     (two, ("0.02157", "12.71", "0.8941", "0.9875"))):
        check(got["stderr"], se)
        check(got["df"], df)
        check(got["ci95"][0], low)
        check(got["ci95"][1], high)


def test_frrc_matches_mrmcaov(jackknife):
    frrc = jackknife["frrc"]
    check(frrc["chi2"], "5.475953")
    assert frrc["df"] == 1
    check(frrc["p"], "0.01927984")
    check(frrc["stderr"], "0.01871748")
    check(frrc["ci95"][0], "-0.08048591")
    check(frrc["ci95"][1], "-0.00711473")
    check(frrc["treatments"]["1"]["stderr"], "0.02428971")
    check(frrc["treatments"]["1"]["ci95"][0], "0.8494301")
    check(frrc["treatments"]["2"]["ci95"][1], "0.9737183")


def test_rrfc_matches_mrmcaov(jackknife):
    rrfc = jackknife["rrfc"]
    check(rrfc["F"], "8.704")
    assert (rrfc["df_num"], rrfc["df_den"]) == (1, 4)
    check(rrfc["p"], "0.04195875")
    check(rrfc["stderr"], "0.01484629")
    check(rrfc["ci95"][0], "-0.08502022")
    check(rrfc["ci95"][1], "-0.00258042")
    check(rrfc["treatments"]["1"]["stderr"], "0.02482994")
    check(rrfc["treatments"]["2"]["ci95"][0], "0.8959894")
    assert rrfc["treatments"]["1"]["df"] == 4


@pytest.mark.parametrize("covariance, expected", [
    # MA summary(mrmc(empirical_auc(truth, rating), ..., cov = DeLong))
    ("delong", {"var_R": "0.0015364254", "var_TR": "0.0002045840", "var_error": "0.0007921325",
                "cov1": "0.0003420090", "cov2": "0.0003395265", "cov3": "0.0002358497",
                "F": "4.484854", "df_den": "15.06611", "p": "0.05123303", "stderr": "0.0206825",
                "low": "-0.0878671960", "high": "0.0002665519",
                "t1": ("0.03307642", "12.59597", "0.8253461", "0.9687280"),
                "t2": ("0.02150464", "12.56530", "0.8942155", "0.9874592")}),
    # MA summary(mrmc(..., cov = unbiased))
    ("unbiased", {"var_R": "0.0015365290", "var_TR": "0.0002077588", "var_error": "0.0007883925",
                  "cov1": "0.0003416706", "cov2": "0.0003390650", "cov3": "0.0002356148",
                  "F": "4.489614", "df_den": "15.03418", "p": "0.0511618", "stderr": "0.02067154",
                  "low": "-0.0878519409", "high": "0.0002512968",
                  "t1": ("0.0330712", "12.58802", "0.8253526", "0.9687214"),
                  "t2": ("0.0214912", "12.53391", "0.8942323", "0.9874424")}),
])
def test_delong_and_unbiased_covariances_match_mrmcaov(vandyke, covariance, expected):
    result = mrmc_analysis(vandyke, covariance=covariance).to_dict()
    for key in ("var_R", "var_TR", "var_error", "cov1", "cov2", "cov3"):
        check(result["variance_components"][key], expected[key])
    rrrc = result["rrrc"]
    for key in ("F", "df_den", "p", "stderr"):
        check(rrrc[key], expected[key])
    check(rrrc["ci95"][0], expected["low"])
    check(rrrc["ci95"][1], expected["high"])
    for name in ("1", "2"):
        se, df, low, high = expected[f"t{name}"]
        got = rrrc["treatments"][name]
        check(got["stderr"], se)
        check(got["df"], df)
        check(got["ci95"][0], low)
        check(got["ci95"][1], high)


def test_sensitivity_resamples_diseased_cases_like_mrmcaov(vandyke):
    # MA: binary_sens(truth, rating >= 3), jackknife.
    result = mrmc_analysis(vandyke, figure="sensitivity", threshold=3).to_dict()
    vc = result["variance_components"]
    check(vc["var_R"], "0.0049747475")
    check(vc["var_TR"], "0.0007828283")
    check(vc["var_error"], "0.0023681257")
    check(vc["cov1"], "0.0009943883")
    check(vc["cov2"], "0.0010145903")
    check(vc["cov3"], "0.0006604938")
    rrrc = result["rrrc"]
    check(rrrc["F"], "6.689493")
    check(rrrc["df_den"], "15.71732")
    check(rrrc["p"], "0.02008822")
    check(rrrc["ci95"][0], "-0.1780371")
    check(rrrc["ci95"][1], "-0.0175185")
    check(rrrc["treatments"]["2"]["df"], "7.575855")
    check(rrrc["treatments"]["2"]["ci95"][0], "0.8328691")
    assert rrrc["treatments"]["2"]["ci95"][1] == 1.0     # MA prints 1.0000000: clipped to [0, 1]
    check(result["treatments"]["1"]["readers"]["5"], "0.689")


def test_specificity_is_sensitivity_of_the_flipped_study(vandyke):
    # Specificity of rating >= 3 = sensitivity of (-rating >= -2.5) with truth flipped: same resampled cases.
    spec = mrmc_analysis(vandyke, figure="specificity", threshold=3).to_dict()
    flipped = vandyke.assign(truth=1 - vandyke["truth"], rating=-vandyke["rating"])
    sens = mrmc_analysis(flipped, figure="sensitivity", threshold=-2.5).to_dict()
    assert spec["rrrc"]["F"] == pytest.approx(sens["rrrc"]["F"], rel=1e-12)
    assert spec["variance_components"]["var_error"] == pytest.approx(sens["variance_components"]["var_error"])
    negatives = vandyke[(vandyke.truth == 0) & (vandyke.reader == 1) & (vandyke.treatment == 1)]
    assert spec["treatments"]["1"]["readers"]["1"] == pytest.approx((negatives.rating < 3).mean())


def test_cases_nested_within_readers_match_mrmcaov(vandyke):
    # MA: case2 = reader.case, "cases nested within reader".
    nested = vandyke.assign(case=vandyke.reader.astype(str) + "." + vandyke.case.astype(str))
    result = mrmc_analysis(nested)
    assert result.design == "cases_within_readers"
    out = result.to_dict()
    vc = out["variance_components"]
    check(vc["var_R"], "1.293517e-03")
    check(vc["var_TR"], "9.213005e-05")
    check(vc["var_error"], "8.079682e-04")
    check(vc["cov1"], "3.490676e-04")
    assert vc["cov2"] == 0 and vc["cov3"] == 0
    check(out["rrrc"]["F"], "8.704")
    assert out["rrrc"]["df_den"] == pytest.approx(4)
    check(out["rrrc"]["p"], "0.04195875")
    check(out["rrrc"]["treatments"]["1"]["ci95"][0], "0.8280981")


def test_cases_nested_within_treatments_match_mrmcaov(vandyke):
    # MA: case3 = treatment.case, "cases nested within treatment".
    nested = vandyke.assign(case=vandyke.treatment.astype(str) + "." + vandyke.case.astype(str))
    result = mrmc_analysis(nested)
    assert result.design == "cases_within_treatments"
    out = result.to_dict()
    vc = out["variance_components"]
    check(vc["var_R"], "1.642585e-03")
    check(vc["var_TR"], "9.078969e-05")
    check(vc["var_error"], "8.058382e-04")
    check(vc["cov2"], "3.455973e-04")
    assert vc["cov1"] == 0 and vc["cov3"] == 0
    rrrc = out["rrrc"]
    check(rrrc["F"], "2.104491")
    check(rrrc["df_den"], "68.42325")
    check(rrrc["p"], "0.1514363")
    check(rrrc["stderr"], "0.03019283")
    check(rrrc["ci95"][0], "-0.10404242")
    check(rrrc["treatments"]["1"]["df"], "12.79430")
    check(rrrc["treatments"]["2"]["ci95"][1], "0.9875634")


def test_delong_refuses_nested_cases(vandyke):
    nested = vandyke.assign(case=vandyke.reader.astype(str) + "." + vandyke.case.astype(str))
    with pytest.raises(InputError, match="fully crossed"):
        mrmc_analysis(nested, covariance="delong")


def test_missing_reading_names_reader_and_case(vandyke):
    gap = vandyke.drop(vandyke[(vandyke.reader == 3) & (vandyke.treatment == 2) & (vandyke.case == 17)].index)
    with pytest.raises(InputError, match=r"reader 3 has no rating of case 17 under treatment 2"):
        mrmc_analysis(gap)


def test_blank_rating_names_reader_and_case(vandyke):
    blank = vandyke.copy()
    blank.loc[(blank.reader == 4) & (blank.treatment == 1) & (blank.case == 9), "rating"] = np.nan
    with pytest.raises(InputError, match=r"reader 4, case 9"):
        mrmc_analysis(blank)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="truth"), "lack column"),
    (lambda d: pd.concat([d, d.iloc[[0]]]), "more than once"),
    (lambda d: d.assign(truth=d.truth.where(~((d.case == 5) & (d.reader == 2)), 1 - d.truth)), "case 5 has both"),
    (lambda d: d.assign(truth=d.truth.replace(1, 2)), "truth must be 0"),
    (lambda d: d[d.treatment == 1], "at least two treatments"),
    (lambda d: d[d.reader == 1], "at least two readers"),
])
def test_bad_tables_get_a_clear_message(vandyke, change, message):
    with pytest.raises(InputError, match=message):
        mrmc_analysis(change(vandyke))


def test_threshold_rules(vandyke):
    with pytest.raises(InputError, match="needs a threshold"):
        mrmc_analysis(vandyke, figure="sensitivity")
    with pytest.raises(InputError, match="threshold applies"):
        mrmc_analysis(vandyke, threshold=3)
    with pytest.raises(InputError, match="empirical AUC only"):
        mrmc_analysis(vandyke, figure="specificity", threshold=3, covariance="delong")


def test_three_treatments_give_every_pair(vandyke):
    third = vandyke[vandyke.treatment == 2].assign(
        treatment=3, rating=lambda d: np.where(d.truth == 1, np.minimum(d.rating + 1, 5), d.rating))
    result = mrmc_analysis(pd.concat([vandyke, third])).to_dict()
    pairs = [(p["first"], p["second"]) for p in result["rrrc"]["pairs"]]
    assert pairs == [("1", "2"), ("1", "3"), ("2", "3")]
    assert result["rrrc"]["df_num"] == 2
    means = {k: v["mean"] for k, v in result["treatments"].items()}
    assert result["rrrc"]["pairs"][1]["diff"] == pytest.approx(means["1"] - means["3"])
    assert result["rrrc"]["diff"] == result["rrrc"]["pairs"][0]["diff"]


def test_row_order_and_labels_do_not_change_the_result(vandyke, jackknife):
    shuffled = vandyke.sample(frac=1.0, random_state=3).assign(reader=lambda d: "r" + d.reader.astype(str))
    again = mrmc_analysis(shuffled).to_dict()
    assert again["rrrc"]["F"] == pytest.approx(jackknife["rrrc"]["F"], rel=1e-12)
    assert set(again["treatments"]["1"]["readers"]) == {"r1", "r2", "r3", "r4", "r5"}


def test_plain_sentence_reports_the_second_treatment_against_the_first(vandyke):
    named = vandyke.assign(treatment=vandyke.treatment.map({1: "cine MRI", 2: "spin-echo MRI"}))
    result = mrmc_analysis(named)
    assert describe_difference(result) == [
        "Across readers and cases, spin-echo MRI rather than cine MRI raised AUC by 0.044 "
        "(95% CI 0.000 to 0.088, p = 0.052)."]
    assert describe_difference(result, reference="spin-echo MRI")[0].startswith(
        "Across readers and cases, cine MRI rather than spin-echo MRI lowered AUC by 0.044 (95% CI -0.088 to 0.000")
    with pytest.raises(InputError, match="reference treatment"):
        describe_difference(result, reference="CT")
