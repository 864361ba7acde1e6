"""ROC and precision-recall figures: AUC with its DeLong interval in the legend, operating points marked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from core.metrics.diagnostic import DiagnosticMetrics
from core.metrics.intervals import Interval, informative_bounds
from core.metrics.operating import OperatingPoint, RocCurve
from core.plots.style import (OPERATING_POINT_COLOR, REFERENCE_GREY, base_layout, safe_text, series_color,
                              series_dash)

# A browser draws a few thousand points instantly; 100,000 would make the page sluggish and say nothing more.
MAX_DISPLAY_POINTS = 2000


def display_indices(x, y, max_points: int = MAX_DISPLAY_POINTS) -> np.ndarray:
    """Indices of at most `max_points` points spread evenly along the curve's length, both ends always kept.

    For drawing only: every number on the page comes from the full curve.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n <= max(int(max_points), 2):
        return np.arange(n)
    steps = np.hypot(np.diff(x), np.diff(y))
    length = np.concatenate([[0.0], np.cumsum(steps)])
    if length[-1] <= 0:
        return np.array([0, n - 1])
    targets = np.linspace(0.0, length[-1], int(max_points) - 1)[1:-1]
    inner = np.clip(np.searchsorted(length, targets, side="left"), 1, n - 2)
    return np.unique(np.concatenate([[0], inner, [n - 1]]))


def display_curve(curve: RocCurve, max_points: int = MAX_DISPLAY_POINTS) -> RocCurve:
    """The curve thinned to at most `max_points` points for drawing (cache it; the builders then skip the work)."""
    keep = display_indices(curve.fpr, curve.tpr, max_points)
    return RocCurve(curve.fpr[keep], curve.tpr[keep], np.asarray(curve.thresholds)[keep])


def auc_label(name: str, auc: Interval | None) -> str:
    """Legend text: the curve's name, its AUC and interval (or why there is none)."""
    name = safe_text(name)
    if auc is None:
        return name
    if auc.value is None or (isinstance(auc.value, float) and math.isnan(auc.value)):
        return f"{name}: AUC n/a" + (f" ({auc.reason})" if auc.reason else "")
    if not informative_bounds(auc.low, auc.high):
        return f"{name}: AUC {auc.value:.3f} (no interval" + (f": {auc.reason})" if auc.reason else ")")
    return (f"{name}: AUC {auc.value:.3f} ({auc.confidence:.0%} CI {auc.low:.3f}-{auc.high:.3f}, "
            f"{auc.method})")


@dataclass(frozen=True)
class RocSeries:
    """One ROC curve to draw: its name, the curve, its AUC estimate and (optionally) a fixed colour."""

    name: str
    curve: RocCurve
    auc: Interval | None = None
    color: str | None = None
    dash: str | None = None


@dataclass(frozen=True)
class PointMarker:
    """An operating point to mark: coordinates on the figure and hover text."""

    name: str
    x: float
    y: float
    text: str = ""
    color: str = OPERATING_POINT_COLOR
    symbol: str = "circle"

    @classmethod
    def on_roc(cls, name: str, point: OperatingPoint, color: str = OPERATING_POINT_COLOR,
               symbol: str = "circle") -> "PointMarker":
        text = (f"threshold {point.threshold:.3f}<br>sensitivity {point.sensitivity:.3f}<br>"
                f"specificity {point.specificity:.3f}<br>TP {point.tp}, FP {point.fp}, FN {point.fn}, TN {point.tn}")
        return cls(name, 1.0 - point.specificity, point.sensitivity, text, color, symbol)

    @classmethod
    def on_pr(cls, name: str, metrics: DiagnosticMetrics, color: str = OPERATING_POINT_COLOR,
              symbol: str = "circle") -> "PointMarker":
        text = f"recall {metrics.sensitivity.value:.3f}<br>precision {metrics.ppv.value:.3f}"
        return cls(name, metrics.sensitivity.value, metrics.ppv.value, text, color, symbol)


def _marker_traces(points: Sequence[PointMarker]) -> list[dict]:
    # Names go through `meta`, never into the template itself, so a '%{' in a user's name stays text.
    return [{"type": "scatter", "x": [p.x], "y": [p.y], "mode": "markers", "name": safe_text(p.name),
             "meta": [safe_text(p.name)], "hovertext": [p.text],
             "marker": {"size": 13, "color": p.color, "symbol": p.symbol, "line": {"width": 2, "color": "white"}},
             "hovertemplate": "<b>%{meta[0]}</b><br>%{hovertext}<extra></extra>"} for p in points]


def with_markers(figure: go.Figure, points: Sequence[PointMarker]) -> go.Figure:
    """A copy of a figure built here (roc_figure, pr_figure: validated once, when built) with `points` marked on
    top. The copy skips plotly's validation of the curves again, so moving an operating point redraws in about a
    tenth of a rebuild; the figure it gives is the one roc_figure/pr_figure would give with the same points."""
    spec = figure.to_dict()
    return go.Figure({"data": spec["data"] + _marker_traces(points), "layout": spec["layout"]}, _validate=False)


_UNIT_AXIS = {"range": [-0.01, 1.01], "tickformat": ".1f"}
# 1 - specificity and sensitivity share a scale: the plot area is square, and whichever side has less room sets
# its size (constrain="domain" on both) instead of the other axis's range stretching past 0..1.
SQUARE_UNIT_AXES = {"xaxis": {**_UNIT_AXIS, "constrain": "domain"},
                    "yaxis": {**_UNIT_AXIS, "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"}}


def roc_figure(series: Sequence[RocSeries], points: Sequence[PointMarker] = (), title: str | None = None,
               max_points: int = MAX_DISPLAY_POINTS, height: int = 480) -> go.Figure:
    """ROC curves (1 - specificity vs sensitivity) with the chance diagonal and marked operating points."""
    data = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "name": "chance (AUC 0.5)",
             "line": {"color": REFERENCE_GREY, "dash": "dot", "width": 1}, "hoverinfo": "skip"}]
    for i, item in enumerate(series):
        keep = display_indices(item.curve.fpr, item.curve.tpr, max_points)
        thresholds = np.asarray(item.curve.thresholds, dtype=float)[keep]
        data.append({
            "type": "scatter", "x": item.curve.fpr[keep], "y": item.curve.tpr[keep], "mode": "lines",
            "name": auc_label(item.name, item.auc),
            "line": {"color": item.color or series_color(i), "dash": item.dash or series_dash(i), "width": 2.5},
            "customdata": np.where(np.isfinite(thresholds), thresholds, np.nan), "meta": [safe_text(item.name)],
            "hovertemplate": ("<b>%{meta[0]}</b><br>1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}"
                              "<br>threshold %{customdata:.3f}<extra></extra>")})
    data += _marker_traces(points)
    layout = base_layout(title=title, x_title="1 - specificity (false-positive rate)",
                         y_title="Sensitivity (true-positive rate)", height=height, legend_below=True,
                         **SQUARE_UNIT_AXES)
    return go.Figure(data=data, layout=layout)


@dataclass(frozen=True)
class PrSeries:
    """One precision-recall curve: recall, precision, average precision and the chance level (prevalence)."""

    name: str
    recall: np.ndarray
    precision: np.ndarray
    average_precision: float
    prevalence: float
    color: str | None = None


def pr_figure(series: Sequence[PrSeries], points: Sequence[PointMarker] = (), title: str | None = None,
              max_points: int = MAX_DISPLAY_POINTS, height: int = 480) -> go.Figure:
    """Precision-recall curves, each with its average precision in the legend and its prevalence as chance."""
    data = []
    for i, item in enumerate(series):
        color = item.color or series_color(i)
        name = safe_text(item.name)
        keep = display_indices(item.recall, item.precision, max_points)
        data.append({"type": "scatter", "x": item.recall[keep], "y": item.precision[keep], "mode": "lines",
                     "name": f"{name}: average precision {item.average_precision:.3f}", "meta": [name],
                     "line": {"color": color, "dash": series_dash(i), "width": 2.5, "shape": "hv"},
                     "hovertemplate": "<b>%{meta[0]}</b><br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"})
        data.append({"type": "scatter", "x": [0, 1], "y": [item.prevalence, item.prevalence], "mode": "lines",
                     "showlegend": False, "line": {"color": color, "dash": "dot", "width": 1}, "meta": [name],
                     "hovertemplate": "chance for %{meta[0]}: prevalence %{y:.3f}<extra></extra>"})
    data += _marker_traces(points)
    layout = base_layout(title=title, x_title="Recall (sensitivity)", y_title="Precision (PPV)", height=height,
                         legend_below=True, xaxis=dict(_UNIT_AXIS), yaxis=dict(_UNIT_AXIS))
    return go.Figure(data=data, layout=layout)
