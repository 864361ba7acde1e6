"""AppTest of the Performance page's Subgroups tab on a test set whose manifest has a `sex` column (own workspace)."""

from __future__ import annotations

from tests._subgroup_data import subgroup_workspace
from tests.apptest import open_page

PAGE = "../pages/performance.py"


def _table(at, *columns):
    return next(f.value for f in at.dataframe if set(columns) <= set(f.value.columns))


def test_subgroups_tab_shows_the_forest_plot_and_the_table_by_sex(tmp_path, monkeypatch):
    ids = subgroup_workspace(tmp_path / "ws")
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    column = at.selectbox(key="perf_subgroup_column")
    assert column.options[:2] == ["sex", "age"] and "image width" in column.options
    column.set_value("sex").run()
    assert not at.exception, [e.value for e in at.exception]
    forest = next(c for c in at.get("plotly_chart") if "AUC by sex" in c.proto.spec)
    assert '"all images' in forest.proto.spec  # the whole test set's estimate drawn as a line
    table = _table(at, "subgroup", "auc", "auc_p_holm")
    assert table["subgroup"].tolist() == ["F", "M"]
    assert table["images"].tolist() == [120, 120]
    # The model guesses for men: their AUC gap to the rest excludes 0 after Holm's correction.
    assert table["auc_p_holm"].tolist() == ["< 0.001", "< 0.001"]
    captions = " ".join(c.value for c in at.caption)
    assert "Holm-adjusted over the subgroups of this column" in captions
    assert "Heterogeneity across the subgroups: AUC p < 0.001" in captions
    at.radio(key="perf_subgroup_statistic").set_value("sensitivity").run()
    assert any("Sensitivity by sex" in c.proto.spec for c in at.get("plotly_chart"))
