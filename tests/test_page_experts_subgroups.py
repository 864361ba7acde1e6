"""AppTest of the Experts page's subgroup table: the seeded simulated readers against a model that is good for
women and guesses for men (own workspace: the demo's test set has no subgroup column)."""

from __future__ import annotations

from core.infer.predictions import read_predictions
from core.readers import store_simulated_readers
from core.store import Workspace
from tests._subgroup_data import TASK, subgroup_workspace
from tests.apptest import open_page

PAGE = "../pages/experts.py"


def _workspace_with_readers(root):
    ids = subgroup_workspace(root)
    frame = read_predictions(ids["path"])[0]
    store_simulated_readers(Workspace.open(ids["root"]), ids["test_set_id"], frame[["image_id", "label"]], TASK)
    return ids


def test_readers_against_the_model_per_subgroup(tmp_path, monkeypatch):
    ids = _workspace_with_readers(tmp_path / "ws")
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    column = at.selectbox(key="experts_subgroup_column")
    assert column.options[:2] == ["sex", "age"] and "image width" in column.options
    column.set_value("sex").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(f.value for f in at.dataframe if "sensitivity: who is higher" in f.value.columns)
    readers = sorted(table["reader"].unique())
    assert len(readers) == 3 and all(r.startswith("SIMULATED-") for r in readers)
    assert table["subgroup"].tolist() == ["F"] * 3 + ["M"] * 3
    assert table["images"].tolist() == [120] * 6  # every simulated reader graded every image
    men = table[table["subgroup"] == "M"]
    women = table[table["subgroup"] == "F"]
    # The model guesses for men: every reader is clearly higher there, on both statistics; never for women.
    assert set(men["sensitivity: who is higher"]) == {"reader higher"}
    assert set(men["specificity: who is higher"]) == {"reader higher"}
    assert "reader higher" not in set(women["sensitivity: who is higher"]) | set(women["specificity: who is higher"])
    # Shown as value (low-high): Wilson intervals of both, on the same cases.
    assert all("(" in text for text in table["reader sensitivity"])
    assert all("(" in text for text in table["model specificity"])
    bullets = " ".join(m.value for m in at.markdown)
    assert "In subgroup M, readers are clearly higher than the model on sensitivity (3 of 3 readers" in bullets
    assert "In subgroup F" not in bullets
    assert any("not adjusted for their number" in c.value for c in at.caption)
