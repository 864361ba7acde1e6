"""Subgroup columns of a test set (a manifest's extra columns, image properties) joined onto its predictions, and
`python -m core evaluate --subgroup COLUMN`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.__main__ import main
from core.data.loading import load_dataset
from core.errors import InputError
from core.infer.predictions import read_predictions
from core.report.subgroups import predictions_test_set, subgroup_values
from tests._data_files import write_image
from tests._subgroup_data import subgroup_workspace


@pytest.fixture(scope="module")
def sexed(tmp_path_factory):
    return subgroup_workspace(tmp_path_factory.mktemp("subgroups") / "workspace")


def test_a_manifest_keeps_its_extra_columns_as_subgroup_columns(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"img{i}.png", seed=i)
    pd.DataFrame({"path": [f"img{i}.png" for i in range(4)], "label": ["CNV", "NORMAL", "CNV", "NORMAL"],
                  "Sex": ["F", "M", "", "F"], "age": ["31", "47", "52", "60"],
                  "image_id": ["a", "b", "c", "d"], "split": ["test"] * 4,
                  "Unnamed: 0": ["0", "1", "2", "3"]}).to_csv(tmp_path / "m.csv", index=False)
    ds = load_dataset(tmp_path / "m.csv", "oct-kermany")
    # Every column beyond the contract, by its own name; one the contract owns gets a suffix; a spreadsheet's
    # index column is not a subgroup.
    assert ds.subgroup_columns() == ["Sex", "age", "image_id (source)"]
    assert [None if pd.isna(v) else v for v in ds.table["Sex"]] == ["F", "M", None, "F"]
    assert ds.table["image_id"].tolist() == [f"img{i}.png" for i in range(4)]
    assert ds.table["image_id (source)"].tolist() == ["a", "b", "c", "d"]
    assert ds.split_named("test").subgroup_columns() == ["Sex", "age", "image_id (source)"]


def test_subgroup_values_join_the_test_set_by_image_id(sexed):
    frame, meta = read_predictions(sexed["path"])
    ds = predictions_test_set(meta, workspace=sexed["root"])
    shuffled = frame.sample(frac=1.0, random_state=0)
    values = subgroup_values(shuffled, ds, ["sex", "image width"])
    expected_sex = ["F" if int(i[10:14]) < 120 else "M" for i in shuffled["image_id"]]
    assert values["sex"].tolist() == expected_sex
    assert values["image width"].tolist() == [32 if int(i[10:14]) % 2 == 0 else 48 for i in shuffled["image_id"]]
    with pytest.raises(InputError, match="no subgroup column 'gender' in this test set; available: sex, age, "
                                         "image width"):
        subgroup_values(frame, ds, ["gender"])


def test_evaluate_command_line_reports_each_subgroup_with_intervals(sexed, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["evaluate", "--predictions", sexed["path"], "--workspace", sexed["root"], "--subgroup", "sex",
                 "--subgroup", "image width", "--bootstrap", "20", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    rows = {r["value"]: r for r in report["subgroups"]["sex"]}
    assert set(rows) == {"F", "M"} and rows["F"]["n"] == rows["M"]["n"] == 120
    # The built model separates the classes for women and guesses for men.
    assert rows["F"]["auc"]["value"] > 0.95 and rows["M"]["auc"]["value"] < 0.7
    assert rows["M"]["auc"]["method"] == "DeLong" and rows["M"]["sensitivity"]["method"] == "Wilson score"
    assert rows["M"]["auc_gap"]["high"] < 0 and rows["M"]["auc_p_adjusted"] < 0.001
    assert "patients" in rows["M"]["weighted_error"]["method"]
    tests = report["subgroup_tests"]["sex"]
    assert tests["view"] == "urgent referral vs rest" and tests["correction"] == "Holm"
    assert tests["heterogeneity"]["auc"]["p_value"] < 0.001
    assert {r["value"] for r in report["subgroups"]["image width"]} == {"32", "48"}


def test_evaluate_command_line_refuses_an_unknown_column_naming_those_available(sexed, capsys):
    code = main(["evaluate", "--predictions", sexed["path"], "--workspace", sexed["root"], "--subgroup", "gender"])
    assert code == 2
    assert "no subgroup column 'gender' in this test set; available: sex, age" in capsys.readouterr().err


def test_predictions_whose_test_set_cannot_be_found_ask_for_data(sexed, tmp_path):
    _, meta = read_predictions(sexed["path"])
    lost = {**meta, "source": str(tmp_path / "gone.csv")}
    with pytest.raises(InputError, match="give the test set's folder or manifest with --data PATH"):
        predictions_test_set(lost, workspace=tmp_path / "elsewhere")
    assert predictions_test_set(lost, data=sexed["manifest"]).subgroup_columns() == ["sex", "age"]


def test_subgroups_are_judged_on_the_view_of_the_models_operating_point(sexed):
    from core.report import evaluate_predictions
    from core.report.subgroups import subgroup_values

    frame, meta = read_predictions(sexed["path"])
    point = {"view": "CNV vs NORMAL", "positive": ["CNV"], "negative": ["NORMAL"], "threshold": 0.5,
             "rule": "youden", "sensitivity": 0.9, "specificity": 0.9, "n_positive": 50, "n_negative": 50,
             "source": "out-of-fold predictions on the training images"}
    values = subgroup_values(frame, predictions_test_set(meta, workspace=sexed["root"]), ["sex"])
    report = evaluate_predictions(frame, meta["task"]["name"], bootstrap=10, subgroups=values,
                                  meta={**meta, "operating_point": point})
    assert report["subgroup_tests"]["sex"]["view"] == "CNV vs NORMAL"
    n_view = int(frame["label"].isin(["CNV", "NORMAL"]).sum())
    assert sum(r["n"] for r in report["subgroups"]["sex"]) == n_view


def test_the_stakeholder_report_has_a_subgroups_section_with_the_forest_plot(sexed):
    from core.report.build import build_report
    from core.report.html import render_html
    from core.store import Workspace

    ws = Workspace.open(sexed["root"])
    report = build_report(ws, sexed["run_id"], sexed["test_set_id"], bootstrap=20, include_readers=False)
    rows = {r["value"]: r for r in report["evaluation"]["subgroups"]["sex"]}
    assert rows["M"]["auc_p_adjusted"] < 0.001 and set(report["evaluation"]["subgroups"]) == {"sex", "age"}
    page = render_html(report)
    assert "Subgroups: who does the model fail?" in page
    assert 'id="table-subgroups-sex"' in page and 'id="figure-subgroups-sex"' in page
    assert "Holm-adjusted over the subgroups of this column" in page


def test_the_report_pages_sections_list_one_subgroup_table_per_column(sexed):
    from core.report.build import build_report
    from core.report.tables import section_tables
    from core.store import Workspace

    report = build_report(Workspace.open(sexed["root"]), sexed["run_id"], sexed["test_set_id"], bootstrap=10,
                          include_readers=False)
    tables = section_tables(report)["subgroups"]
    assert [t.title for t in tables] == ["By sex", "By age"]
    assert [row[0] for row in tables[0].rows] == ["F", "M"]
    assert "Heterogeneity across the subgroups: auc p < 0.001" in tables[0].note
