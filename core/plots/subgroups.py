"""Forest plot of a subgroup analysis (core.metrics.subgroups.SubgroupTable, or its to_dict() form as the evaluation
JSON and the report store it): one row per subgroup with its interval, the whole test set's estimate as a vertical
line, small subgroups drawn hollow and named as such."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from core.metrics.subgroups import SubgroupTable
from core.plots.style import BLUE, REFERENCE_GREY, VERMILLION, base_layout, safe_text

FOREST_STATISTICS = {"auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity"}
SMALL_MARK = " (small)"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def forest_figure(table: SubgroupTable | dict, statistic: str = "auc", title: str | None = None) -> go.Figure:
    """One row per subgroup (label: value and n), point and interval of `statistic` (auc, sensitivity or
    specificity); the overall estimate as a dashed vertical line. A small subgroup (fewer than the table's
    small_group positives or negatives) is a hollow marker with "(small)" in its label."""
    if statistic not in FOREST_STATISTICS:
        raise ValueError(f"statistic must be one of {tuple(FOREST_STATISTICS)}, got {statistic!r}")
    label = FOREST_STATISTICS[statistic]
    body = table.to_dict() if isinstance(table, SubgroupTable) else table
    small_group, confidence = body.get("small_group"), _number(body.get("confidence", 0.95))
    names, values, lows, highs, small = [], [], [], [], []
    for row in body["rows"]:
        estimate = row.get(statistic) or {}
        names.append(safe_text(f"{row['value']} (n={row['n']}){SMALL_MARK if row.get('small') else ''}"))
        values.append(_number(estimate.get("value")))
        lows.append(_number(estimate.get("low")))
        highs.append(_number(estimate.get("high")))
        small.append(bool(row.get("small")))
    values, lows, highs = (np.asarray(a, dtype=float) for a in (values, lows, highs))
    small = np.asarray(small, dtype=bool)
    data = []
    for is_small, name, color, symbol in ((False, "subgroup", BLUE, "square"),
                                          (True, f"small subgroup (< {small_group} positives or negatives)",
                                           VERMILLION, "square-open")):
        rows = np.flatnonzero(small == is_small)
        if rows.size == 0:
            continue
        data.append({"type": "scatter", "mode": "markers", "name": name, "showlegend": True,
                     "y": [names[i] for i in rows],
                     "x": values[rows], "marker": {"color": color, "symbol": symbol, "size": 10},
                     "error_x": {"type": "data", "symmetric": False, "thickness": 1.5, "width": 6,
                                 "array": np.nan_to_num(highs[rows] - values[rows]),
                                 "arrayminus": np.nan_to_num(values[rows] - lows[rows])},
                     "customdata": np.column_stack([lows[rows], highs[rows]]),
                     "hovertemplate": "%{y}<br>" + label + " %{x:.3f} (%{customdata[0]:.3f} to "
                                      "%{customdata[1]:.3f})<extra></extra>"})
    overall = _number(((body.get("overall") or {}).get(statistic) or {}).get("value"))
    shapes, annotations = [], []
    if math.isfinite(overall):
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": overall, "x1": overall,
                       "y0": 0, "y1": 1, "line": {"color": REFERENCE_GREY, "dash": "dash", "width": 1.5}})
        annotations.append({"xref": "x", "yref": "paper", "x": overall, "y": 1.0, "yanchor": "bottom",
                            "showarrow": False, "text": f"all images {overall:.3f}",
                            "font": {"size": 12, "color": "#444"}})
    layout = base_layout(title=title, x_title=f"{label} ({confidence:.0%} interval)",
                         height=max(240, 44 * len(names) + 140), legend_below=True,
                         xaxis={"range": [-0.02, 1.02]}, yaxis={"autorange": "reversed", "type": "category"},
                         margin={"l": 200, "r": 30, "t": 60 if title else 40, "b": 60})
    layout.update(shapes=shapes, annotations=annotations)
    return go.Figure(data=data, layout=layout)
