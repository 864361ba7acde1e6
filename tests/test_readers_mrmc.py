"""MRMC readings CSV import and the `python -m core mrmc` command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core.__main__ import main
from core.errors import InputError
from core.readers.mrmc_readings import load_mrmc_readings

VANDYKE = Path(__file__).parent / "data" / "reader_studies" / "vandyke.csv"


def test_loads_the_reference_study():
    table = load_mrmc_readings(VANDYKE)
    assert list(table.columns) == ["reader", "treatment", "case", "truth", "rating"]
    assert len(table) == 1140 and set(table["truth"]) == {0, 1}
    assert table["rating"].dtype == float


def test_other_column_names_are_accepted(tmp_path):
    data = pd.read_csv(VANDYKE).rename(columns={"reader": "Reader_ID", "treatment": "modality",
                                                 "case": "image_id", "rating": "score"})
    path = tmp_path / "renamed.csv"
    data.to_csv(path, index=False)
    assert len(load_mrmc_readings(path)) == 1140


def test_every_row_problem_is_listed_with_its_line(tmp_path):
    text = VANDYKE.read_text().splitlines()
    text[1] = "1,1,1,yes,1"          # bad truth on line 2
    text[2] = "1,1,2,0,high"         # bad rating on line 3
    text.append("1,1,4,0,2")         # repeats line 5
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError) as info:
        load_mrmc_readings(path)
    message = str(info.value)
    assert message.startswith("bad.csv: 3 problem(s)")
    assert "line 2: truth must be 0 or 1, got 'yes'" in message
    assert "line 3: rating of reader 1, case 2 is not a number ('high')" in message
    assert f"line {len(text)}: reader 1 already rated case 4 under treatment 1" in message


def test_missing_reading_is_named(tmp_path):
    lines = VANDYKE.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("2,2,30,")]
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(kept) + "\n")
    with pytest.raises(InputError, match=r"gap.csv: missing reading: reader 2 has no rating of case 30 under "
                                         r"treatment 2"):
        load_mrmc_readings(path)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("reader,case,rating\n1,1,3\n")
    with pytest.raises(InputError, match="missing treatment, truth"):
        load_mrmc_readings(path)


def test_cli_writes_the_analysis(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["mrmc", "--readings", str(VANDYKE), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "treatment 2 rather than treatment 1 raised AUC by 0.044 (95% CI 0.000 to 0.088, p = 0.052)" in printed
    result = json.loads(out.read_text())
    assert round(result["rrrc"]["F"], 3) == 4.456            # RJafroc, Van Dyke jackknife RRRC
    assert round(result["rrrc"]["df_den"], 2) == 15.26
    assert result["analysis"]["design"] == "crossed" and result["analysis"]["cases"] == 114
    assert result["frrc"]["treatments"]["1"]["df"] == "inf"   # JSON-safe infinity


def test_cli_sensitivity_and_delong(tmp_path):
    out = tmp_path / "sens.json"
    assert main(["mrmc", "--readings", str(VANDYKE), "--figure", "sensitivity", "--threshold", "3",
                 "--out", str(out)]) == 0
    assert round(json.loads(out.read_text())["rrrc"]["F"], 6) == 6.689493     # MRMCaov binary_sens
    assert main(["mrmc", "--readings", str(VANDYKE), "--covariance", "delong", "--out", str(out)]) == 0
    assert round(json.loads(out.read_text())["rrrc"]["F"], 6) == 4.484854     # MRMCaov DeLong


def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys):
    path = tmp_path / "nothing.csv"
    path.write_text("reader,treatment,case,truth,rating\n")
    assert main(["mrmc", "--readings", str(path)]) == 2
    assert "nothing.csv: no readings found" in capsys.readouterr().err
    assert main(["mrmc", "--readings", str(VANDYKE), "--figure", "sensitivity"]) == 2
    assert "needs a threshold" in capsys.readouterr().err


def test_simulated_study_is_labelled_and_crossed():
    from core.metrics.mrmc import mrmc_analysis
    from core.readers.mrmc_simulated import simulate_mrmc_study
    from core.readers.readings import is_simulated

    study = simulate_mrmc_study(readers=4, cases=80, separation=(1.0, 2.5), seed=3)
    assert study["reader"].map(is_simulated).all()
    assert len(study) == 4 * 80 * 2 and study["rating"].between(0, 1).all()
    result = mrmc_analysis(study)
    assert result.design == "crossed"
    means = result.treatment_means
    assert means["aided"] > means["unaided"]
    again = simulate_mrmc_study(readers=4, cases=80, separation=(1.0, 2.5), seed=3)
    pd.testing.assert_frame_equal(study, again)
