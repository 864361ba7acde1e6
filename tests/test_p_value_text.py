"""p-values as a reader meets them (issue 22 item 9): the audit printed 0 or a row of zeros for tiny p-values."""

from __future__ import annotations

import math

from core.metrics.intervals import p_value_text
from core.metrics.mrmc import _p_text
from dashboard.audit_ui import shift_tests_table


def test_tiny_p_values_read_below_the_floor_and_others_with_three_decimals():
    assert p_value_text(1e-300) == "< 0.001" and p_value_text(0.0) == "< 0.001"
    assert p_value_text(0.0004) == "< 0.001" and p_value_text(0.001) == "0.001"
    assert p_value_text(0.04321) == "0.043" and p_value_text(None) == "not computed"
    assert p_value_text(math.nan) == "not computed"
    assert _p_text(1e-12) == "p < 0.001" and _p_text(0.25) == "p = 0.250"


def test_the_audit_shift_table_shows_p_values_as_text():
    shift = {"tests": [{"property": "width", "test": "Kolmogorov-Smirnov", "statistic": 1.0, "p_value": 3e-41,
                        "flagged": True},
                       {"property": "mode", "test": "chi-square (contingency)", "statistic": 0.2, "p_value": 0.6543,
                        "flagged": False}]}
    table = shift_tests_table(shift)
    assert table["p value"].tolist() == ["< 0.001", "0.654"]


def test_log_axis_ticks_name_their_decade():
    # The LR chart's log axis read "2 3 ... 9 1 2 3 4": every tick now carries its full value.
    import math

    from core.plots.style import log_ticks

    values, labels = log_ticks(math.log10(0.3), math.log10(40))
    assert values == [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
    assert labels[values.index(1.0)] == "1" and all(float(t) == v for t, v in zip(labels, values))
    assert all(0.3 <= v <= 40 for v in values) and len(values) >= 3
    short, _ = log_ticks(math.log10(0.8), math.log10(4.5))
    assert short == [1.0, 2.0]


def test_the_lr_forest_figure_sets_those_ticks():
    import pandas as pd

    from core.plots.experts import lr_forest_figure

    table = pd.DataFrame([{"reader_id": "model", "measure": m, "value": v, "low": lo, "high": hi, "method": "log"}
                          for m, v, lo, hi in (("LR+", 6.0, 3.0, 12.0), ("LR-", 0.2, 0.1, 0.4))])
    fig = lr_forest_figure(table)
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert axis.type == "log" and axis.tickvals and len(axis.ticktext) == len(axis.tickvals)
        assert "1" in axis.ticktext
