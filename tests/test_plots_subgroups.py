"""The subgroup forest plot (core/plots/subgroups.py) on built data."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics.subgroups import subgroup_table
from core.plots.subgroups import forest_figure


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 600
    site = np.where(np.arange(n) < 40, "tiny", np.where(rng.random(n) < 0.5, "A", "B"))
    truth = rng.random(n) < 0.4
    truth[:40] = np.arange(40) < 6  # the tiny site has 6 positives
    score = rng.normal(size=n) + 1.5 * truth
    return subgroup_table("site", site, truth, score, score > 0.75)


def test_one_row_per_subgroup_with_the_overall_line_and_small_groups_marked(table):
    fig = forest_figure(table, "auc", title="AUC by site")
    rows = [y for trace in fig.data for y in trace.y]
    assert sorted(rows) == sorted(["A (n=%d)" % table.rows[0].n, "B (n=%d)" % table.rows[1].n, "tiny (n=40) (small)"])
    small = next(t for t in fig.data if t.name.startswith("small subgroup"))
    assert list(small.y) == ["tiny (n=40) (small)"] and small.marker.symbol == "square-open"
    line = fig.layout.shapes[0]
    assert line.x0 == line.x1 == pytest.approx(table.overall_auc.value)
    a = next(r for r in table.rows if r.value == "A")
    trace = next(t for t in fig.data if "A (n=" in t.y[0])
    assert trace.x[0] == pytest.approx(a.auc.value)
    assert trace.error_x.array[0] == pytest.approx(a.auc.high - a.auc.value)


def test_the_json_form_draws_the_same_figure(table):
    for statistic in ("auc", "sensitivity", "specificity"):
        assert forest_figure(table, statistic).to_dict() == forest_figure(table.to_dict(), statistic).to_dict()
    with pytest.raises(ValueError, match="statistic must be one of"):
        forest_figure(table, "ppv")
