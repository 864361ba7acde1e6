"""Figures that put runs (or readers) side by side: overlaid ROCs, a learning curve, metric bars with intervals."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.metrics.intervals import Interval
from core.metrics.operating import RocCurve
from core.plots.roc import PointMarker, RocSeries, roc_figure
from core.plots.style import base_layout, safe_text, series_color, series_colors, series_dash


def compare_roc_figure(curves: Mapping[str, tuple[RocCurve, Interval | None]], points: Sequence[PointMarker] = (),
                       title: str | None = None) -> go.Figure:
    """Several runs' ROC curves on one set of axes, each run in its own colour and dash, AUC in the legend."""
    colors = series_colors(curves)
    series = [RocSeries(name, curve, auc, colors[name], series_dash(i))
              for i, (name, (curve, auc)) in enumerate(curves.items())]
    return roc_figure(series, points, title=title)


def learning_curve_figure(table: pd.DataFrame, metric: str, metric_label: str,
                          labels: Mapping[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Metric (with interval bars) against the number of training images, one marker per run (log x axis,
    ticks at the runs' sizes)."""
    labels = labels or {}
    x = table["training_images"].to_numpy(dtype=float)
    y = table[metric].to_numpy(dtype=float)
    nan = np.full(y.shape, np.nan)
    low = table[f"{metric}_low"].to_numpy(dtype=float) if f"{metric}_low" in table else nan
    high = table[f"{metric}_high"].to_numpy(dtype=float) if f"{metric}_high" in table else nan
    text = [safe_text(labels.get(r, r)) for r in table["run"]]
    data = [{"type": "scatter", "x": x, "y": y, "mode": "lines+markers", "name": metric_label, "text": text,
             "line": {"color": series_color(0), "width": 2.5}, "marker": {"size": 10, "color": series_color(0)},
             "error_y": {"type": "data", "symmetric": False, "array": np.nan_to_num(high - y),
                         "arrayminus": np.nan_to_num(y - low), "thickness": 1.5, "width": 6},
             "hovertemplate": "%{text}<br>%{x:,} training images<br>%{y:.3f}<extra></extra>"}]
    ticks = np.unique(x[np.isfinite(x)])
    layout = base_layout(title=title, x_title="Training images (log scale)", y_title=metric_label,
                         xaxis={"type": "log", "tickvals": ticks, "ticktext": [f"{int(v):,}" for v in ticks]})
    return go.Figure(data=data, layout=layout)


def metric_bars_figure(table: pd.DataFrame, value: str, label: str, name_column: str = "name",
                       colors: Mapping[str, str] | None = None, title: str | None = None,
                       value_format: str = ".3f") -> go.Figure:
    """Horizontal bars of one metric per row of `table` (columns name, value, value_low, value_high if known)."""
    names = table[name_column].astype(str).tolist()
    colors = colors or series_colors(names)
    values = table[value].to_numpy(dtype=float)
    nan = np.full(values.shape, np.nan)
    low = table[f"{value}_low"].to_numpy(dtype=float) if f"{value}_low" in table else nan
    high = table[f"{value}_high"].to_numpy(dtype=float) if f"{value}_high" in table else nan
    data = [{"type": "bar", "y": [safe_text(n) for n in names], "x": values, "orientation": "h",
             "marker": {"color": [colors.get(n, series_color(0)) for n in names]},
             "error_x": {"type": "data", "symmetric": False, "array": np.nan_to_num(high - values),
                         "arrayminus": np.nan_to_num(values - low), "thickness": 1.5},
             "text": [format(v, value_format) if np.isfinite(v) else "n/a" for v in values],
             "textposition": "inside", "insidetextanchor": "start",
             "hovertemplate": "%{y}<br>%{x:" + value_format + "}<extra></extra>"}]
    layout = base_layout(title=title, x_title=label, height=max(260, 48 * len(names) + 120),
                         xaxis={"rangemode": "tozero"}, yaxis={"autorange": "reversed", "type": "category"},
                         margin={"l": 220, "r": 20, "t": 50 if title else 20, "b": 60})
    return go.Figure(data=data, layout=layout)
