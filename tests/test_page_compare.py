"""AppTest of the Compare runs page: overlaid ROCs, paired tests, metrics side by side, learning curve."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests._evaluation_data import build_workspace
from tests.apptest import open_page

PAGE = "../pages/compare.py"
RUNS = [
    {"name": "Full model", "separation": 2.5, "training_images": 8000},
    {"name": "Limited model (100 per class)", "separation": 1.0, "per_class": 100, "training_images": 400},
    {"name": "TL50", "separation": 1.8, "fraction": 0.5, "training_images": 4000},
]


def _open(**state) -> AppTest:
    return open_page(PAGE, **state)

def _table(at: AppTest, *columns: str):
    for frame in at.dataframe:
        if set(columns) <= set(frame.value.columns):
            return frame.value
    raise AssertionError(f"no table with columns {columns}")


@pytest.fixture
def three_runs(tmp_path, monkeypatch):
    ids = build_workspace(tmp_path / "ws", n=600, runs=RUNS)
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    return ids


def test_runs_side_by_side_with_tests_and_learning_curve(three_runs):
    at = _open(test_set_id=three_runs["test_set_id"])
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # overlaid ROC, metric bars, learning curve
    summary = _table(at, "run", "view_auc", "weighted_error")
    assert sorted(summary["run"]) == sorted(r["name"] for r in RUNS)
    assert all("(" in v for v in summary["view_auc"])  # AUC with its DeLong interval
    pairs = _table(at, "run_a", "run_b", "delong_p", "mcnemar_p")
    assert len(pairs) == 3 and pairs["delong_p"].between(0, 1).all()
    full_vs_limited = pairs[pairs[["run_a", "run_b"]].isin(["Full model", "Limited model (100 per class)"]).all(axis=1)]
    assert float(full_vs_limited["delong_p"].iloc[0]) < 0.05  # a clearly better model is told apart
    facts = _table(at, "run", "training data", "training images")
    labels = dict(zip(facts["run"], facts["training data"]))
    assert labels["Full model"] == "full training data"
    assert labels["Limited model (100 per class)"] == "limited: 100 per class" and labels["TL50"].startswith("TL50")
    assert any("600 images scored by every selected run" in c.value for c in at.caption)
    assert sum("**Full vs limited**" in m.value for m in at.markdown) == 2  # per-class limit and TL50


def test_changing_the_view_and_the_runs_updates_the_page(three_runs):
    at = _open(test_set_id=three_runs["test_set_id"])
    before = _table(at, "run", "view_auc")["view_auc"].tolist()
    at.selectbox(key="cmp_view").set_value("NORMAL vs rest").run()
    assert _table(at, "run", "view_auc")["view_auc"].tolist() != before
    key = f"cmp_runs_{three_runs['test_set_id']}"
    at.multiselect(key=key).set_value(three_runs["run_ids"][:2]).run()
    assert len(_table(at, "run_a", "run_b")) == 1
    at.multiselect(key=key).set_value(three_runs["run_ids"][:1]).run()
    assert any("at least two runs" in i.value for i in at.info)


def test_one_run_on_the_test_set_asks_for_another(tmp_path, monkeypatch):
    ids = build_workspace(tmp_path / "ws", n=200, runs=RUNS[:1])
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = _open(test_set_id=ids["test_set_id"])
    assert not at.exception
    assert at.multiselect(key=f"cmp_runs_{ids['test_set_id']}").value == ids["run_ids"]
    assert any("at least two runs" in i.value and "Only one run has predictions here" in i.value for i in at.info)
    assert not at.get("plotly_chart")
