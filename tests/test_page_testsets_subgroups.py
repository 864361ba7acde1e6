"""AppTest of the Test sets page's preview: a test set's subgroup columns named in a caption, their values counted,
the first images listed with theirs (own workspace: the manifest has sex and age columns)."""

from __future__ import annotations

from dashboard import state
from tests._subgroup_data import subgroup_workspace
from tests.apptest import open_page

PAGE = "../pages/test_sets.py"


def test_preview_names_and_shows_the_subgroup_columns(tmp_path, monkeypatch):
    ids = subgroup_workspace(tmp_path / "ws")
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, **{state.TEST_SET_PREVIEW: ids["test_set_id"]})
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Subgroup columns (2): sex, age.") for c in captions), captions
    summary = next(f.value for f in at.dataframe if "values (images)" in f.value.columns)
    assert summary["column"].tolist() == ["sex", "age"]
    assert summary["values (images)"].iat[0] == "F (120), M (120)"
    assert summary["images without a value"].tolist() == [0, 0]
    assert summary["distinct values"].iat[1] > 8 and summary["values (images)"].iat[1].endswith("more")
    listed = next(f.value for f in at.dataframe if {"image_id", "sex", "age"} <= set(f.value.columns))
    assert len(listed) == 20 and listed["sex"].iat[0] == "F"
    assert listed["image_id"].iat[0] == "images/img0000.png"
