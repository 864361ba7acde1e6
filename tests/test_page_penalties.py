"""AppTest of the Penalties page: a cell edit recomputes the weighted errors; bad input is refused; matrices persist."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.store import Workspace
from tests.apptest import open_page

PAGE = "../pages/penalties.py"
EDITOR = "pen_editor_oct-kermany_0"
ARGMAX = "Weighted error (argmax)"
RULE = "Weighted error (penalty rule)"


def _open(seeded: dict, **state) -> AppTest:
    return open_page(PAGE, run_id=seeded["run_id"], test_set_id=seeded["test_set_id"], **state)

def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _edit(at: AppTest, row: int, column: str, value) -> AppTest:
    at.session_state[EDITOR] = {"edited_rows": {row: {column: value}}, "added_rows": [], "deleted_rows": []}
    return at.run()


def _common_mistake(seeded: dict) -> tuple[str, str]:
    """(true, called) of the seeded model's most frequent mistake: a cell whose penalty moves its weighted error."""
    from core.infer import read_predictions

    frame, _ = read_predictions(seeded["predictions_path"])
    wrong = frame[frame["label"] != frame["predicted"]]
    pair = wrong.groupby(["label", "predicted"]).size().idxmax()
    return str(pair[0]), str(pair[1])


def _reset(seeded: dict) -> None:
    """Start from the task's default matrix, with no saved matrices."""
    ws = Workspace.open(seeded["root"])
    ws.set_setting("active_penalty", {})
    for name in ws.list_penalties("oct-kermany"):
        ws.delete_penalty(name, "oct-kermany")


@pytest.fixture
def seeded(own_seeded_workspace):
    """A private copy (these tests save matrices) with the task's default matrix in use."""
    _reset(own_seeded_workspace)
    return own_seeded_workspace


def test_page_shows_the_matrix_the_model_and_the_experts(seeded):
    at = _open(seeded)
    assert at.data_editor and at.data_editor[0].key == EDITOR
    grid = at.data_editor[0].value
    assert grid.loc["CNV", "NORMAL"] == 4.0 and grid.loc["NORMAL", "CNV"] == 1.0  # Kermany: missing CNV costs 4
    metrics = _metrics(at)
    assert {ARGMAX, RULE, "Cost per 1,000 images", "Calls changed by the rule"} <= set(metrics)
    assert float(metrics["Cost per 1,000 images"].replace(",", "")) == pytest.approx(
        1000 * float(metrics[ARGMAX]), abs=1)
    assert len(at.get("plotly_chart")) == 4  # argmax and rule confusion, their change, weighted-error bars
    readers = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert (readers["kind"] == "reader").sum() >= 1  # the seeded simulated readers
    assert any("SIMULATED" in c.value for c in at.caption)


def test_editing_a_cell_recomputes_and_follows_the_user(seeded):
    at = _open(seeded)
    before = _metrics(at)[ARGMAX]
    readers_before = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    true, called = _common_mistake(seeded)
    row = ["CNV", "DME", "DRUSEN", "NORMAL"].index(true)
    _edit(at, row, called, 10.0)  # the model's most common mistake now costs 10
    assert not at.exception
    after = _metrics(at)
    assert float(after[ARGMAX]) > float(before)
    readers_after = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert not readers_after["weighted_error"].equals(readers_before["weighted_error"])
    # The matrix in use is shared with the other pages (session) and kept in the workspace (reload, experts page).
    column = ["CNV", "DME", "DRUSEN", "NORMAL"].index(called)
    assert at.session_state["penalty_matrix"]["oct-kermany"].rows[row][column] == 10.0
    saved = Workspace.open(seeded["root"]).get_setting("active_penalty")["oct-kermany"]
    assert saved["matrix"][row][column] == 10.0 and "edited" in saved["name"]
    again = _open(seeded)
    assert again.data_editor[0].value.loc[true, called] == 10.0
    assert _metrics(again)[ARGMAX] == after[ARGMAX]


def test_bad_input_is_refused_and_the_diagonal_warns(seeded):
    at = _open(seeded)
    before = _metrics(at)[ARGMAX]
    _edit(at, 2, "NORMAL", -1.0)
    assert any("row DRUSEN (true), column NORMAL (called)" in e.value and "negative" in e.value for e in at.error)
    assert _metrics(at)[ARGMAX] == before  # the last valid matrix stays in use
    _edit(at, 0, "CNV", 2.0)
    assert not at.error
    assert any("non-zero penalty" in w.value for w in at.warning)


def test_presets_and_saved_matrices(seeded):
    at = _open(seeded)
    at.selectbox(key="pen_preset_oct-kermany").set_value("Uniform: every mistake costs 1").run()
    at.button(key="pen_load").click().run()
    assert not at.exception
    grid = at.data_editor[0].value
    assert grid.loc["CNV", "NORMAL"] == 1.0 and grid.loc["CNV", "CNV"] == 0.0
    # With the uniform (0/1) matrix the penalty-minimising rule is argmax: nothing changes.
    metrics = _metrics(at)
    assert metrics[ARGMAX] == metrics[RULE] and metrics["Calls changed by the rule"] == "0"
    at.text_input(key="pen_save_name").input("my clinic").run()
    at.button(key="pen_save").click().run()
    ws = Workspace.open(seeded["root"])
    assert ws.list_penalties("oct-kermany")["my clinic"][0] == [0.0, 1.0, 1.0, 1.0]
    assert "Saved: my clinic" in at.selectbox(key="pen_preset_oct-kermany").options
    at.button(key="pen_delete").click().run()
    assert "my clinic" not in ws.list_penalties("oct-kermany")


def test_confusion_matrices_get_half_the_page_each(seeded):
    """In thirds of the page the cells were too narrow for "1,000 / 100%"; each matrix now has a half-width column
    (tests/test_plots_layout.py proves the text fits at that width)."""
    at = _open(seeded)
    charts = {}
    for column in at.columns:
        for chart in column.get("plotly_chart"):
            key = chart.proto.id.split("-")[-1] if not getattr(chart, "key", None) else chart.key
            charts[str(key)] = round(float(column.weight), 2)
    for name in ("confusion-argmax", "confusion-min-penalty", "confusion-change"):
        assert any(k.endswith(name) and weight == 0.5 for k, weight in charts.items()), charts
