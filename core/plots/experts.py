"""Readers vs the model, drawn: ROC with reader crosshairs, forest plot of likelihood ratios, weighted-error bars."""

from __future__ import annotations

import html
import math
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.metrics.intervals import informative_bounds
from core.plots.style import (BLUE, OPERATING_POINT_COLOR, REFERENCE_GREY, apply_layout, log_ticks,
                               series_color)
from core.plots.roc import SQUARE_UNIT_AXES

MODEL_ID = "model"
MODEL_COLOR = BLUE
# Readers never take the model's blue, so a reader is never mistaken for the model.
_READER_OFFSET = 1
MAX_CURVE_POINTS = 2000


def _label(text) -> str:
    """Plotly renders a few HTML tags (links included) in names and hover text; reader codes come from users."""
    return html.escape(str(text), quote=False)


def _number(value, digits: int = 2) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def interval_text(value, low, high, digits: int = 2, reason: str = "") -> str:
    """'0.83 (0.44 to 0.97)'; 'n/a' where a bound is not estimable ('to', since bounds may be negative). No bounds,
    or a zero-width interval (core.metrics.intervals.informative_bounds): the value and 'no interval'."""
    if all(_number(b) == "n/a" for b in (low, high)) or (
            not informative_bounds(low, high) and _number(low) != "n/a" and _number(high) != "n/a"):
        if _number(value) == "n/a":
            return "n/a"
        return f"{_number(value, digits)} (no interval" + (f": {reason})" if reason else ")")
    return f"{_number(value, digits)} ({_number(low, digits)} to {_number(high, digits)})"


def reader_colors(reader_ids: Iterable[str]) -> dict[str, str]:
    """Reader -> colour, the same on every figure of the page and of the report; the model keeps the palette's blue.

    The one owner of reader colours (the Experts page, the report, the MRMC figure all call it). Colours follow
    the sorted reader codes, not the order of a table's rows: the Experts page lists readers by performance and
    the report by code, and a reader kept its colour in neither.
    """
    colors = {MODEL_ID: MODEL_COLOR}
    readers = sorted({str(r) for r in reader_ids if str(r) != MODEL_ID})
    colors.update({r: series_color(i + _READER_OFFSET) for i, r in enumerate(readers)})
    return colors


def _is_simulated(kind) -> bool:
    return "simulated" in str(kind)


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced curve vertices, first and last kept: a browser draws 2,000 points as well as 100,000.
    For display only; the AUC and the operating points come from the full curve."""
    if len(x) <= max_points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
    return x[keep], y[keep]


def _errors(center, low, high) -> tuple[list[float], list[float]]:
    """Asymmetric error-bar lengths; a bound that is not estimable draws no bar on that side."""
    plus = [h - c if np.isfinite(h) and np.isfinite(c) else 0.0 for c, h in zip(center, high)]
    minus = [c - lo if np.isfinite(lo) and np.isfinite(c) else 0.0 for c, lo in zip(center, low)]
    return plus, minus


def reader_roc_figure(roc: dict, points: pd.DataFrame, model_point: dict | None = None, title: str | None = None,
                      max_curve_points: int = MAX_CURVE_POINTS, height: int = 520) -> go.Figure:
    """The model's ROC curve (from core.readers.model_roc) with every reader as a point and crosshair intervals
    (core.readers.roc_points' table: fpr = 1 - specificity, tpr = sensitivity, with bounds), and the model's
    operating point (a row of core.readers.model_metrics) when given."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", hoverinfo="skip",
                             line={"color": REFERENCE_GREY, "dash": "dot", "width": 1}))
    fpr, tpr = _thin(np.asarray(roc["fpr"], float), np.asarray(roc["tpr"], float), max_curve_points)
    auc = roc.get("auc")
    auc_text = "" if auc is None else f", AUC {interval_text(auc.value, auc.low, auc.high, 3)}"
    fig.add_trace(go.Scatter(
        x=fpr, y=tpr, mode="lines", name=f"model ROC{auc_text}", line={"color": MODEL_COLOR, "width": 2.5},
        hovertemplate="model<br>1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}<extra></extra>"))
    if model_point is not None:
        _add_model_point(fig, model_point)
    colors = reader_colors(points["reader_id"])
    for row in points.to_dict("records"):
        reader = str(row["reader_id"])
        x_plus, x_minus = _errors([row["fpr"]], [row["fpr_low"]], [row["fpr_high"]])
        y_plus, y_minus = _errors([row["tpr"]], [row["tpr_low"]], [row["tpr_high"]])
        simulated = _is_simulated(row.get("kind"))
        hover = (f"<b>{_label(reader)}</b>{' (simulated)' if simulated else ''}<br>"
                 f"sensitivity {interval_text(row['tpr'], row['tpr_low'], row['tpr_high'])}<br>"
                 f"specificity {interval_text(1 - row['fpr'], 1 - row['fpr_high'], 1 - row['fpr_low'])}<br>"
                 f"cases in this view: {row.get('n_view', 'n/a')}")
        fig.add_trace(go.Scatter(
            x=[row["fpr"]], y=[row["tpr"]], mode="markers", name=_label(reader),
            marker={"color": colors[reader], "size": 12, "symbol": "diamond" if simulated else "circle",
                    "line": {"color": "white", "width": 1}},
            error_x={"type": "data", "symmetric": False, "array": x_plus, "arrayminus": x_minus,
                     "color": colors[reader], "thickness": 1.5, "width": 4},
            error_y={"type": "data", "symmetric": False, "array": y_plus, "arrayminus": y_minus,
                     "color": colors[reader], "thickness": 1.5, "width": 4},
            hovertemplate=hover + "<extra></extra>"))
    view = roc.get("view", "")
    apply_layout(fig, title=title or f"ROC, {_label(view)}: the model and the readers (95% intervals)",
                 x_title="1 - specificity (false-positive rate)", y_title="Sensitivity (true-positive rate)",
                 height=height, legend_below=True)  # a legend at the side left half a column 150 px wide
    fig.update_layout(**SQUARE_UNIT_AXES)
    return fig


def _add_model_point(fig: go.Figure, row: dict) -> None:
    fpr = 1 - row["specificity"]
    x_plus, x_minus = _errors([fpr], [1 - row["specificity_high"]], [1 - row["specificity_low"]])
    y_plus, y_minus = _errors([row["sensitivity"]], [row["sensitivity_low"]], [row["sensitivity_high"]])
    rule = row.get("rule") or f"score >= {row.get('threshold', float('nan')):g}"
    hover = (f"<b>model at {_label(rule)}</b><br>"
             f"sensitivity {interval_text(row['sensitivity'], row['sensitivity_low'], row['sensitivity_high'])}<br>"
             f"specificity {interval_text(row['specificity'], row['specificity_low'], row['specificity_high'])}")
    fig.add_trace(go.Scatter(
        x=[fpr], y=[row["sensitivity"]], mode="markers", name=f"model at {_label(rule)}",
        marker={"color": OPERATING_POINT_COLOR, "size": 12, "symbol": "x"},
        error_x={"type": "data", "symmetric": False, "array": x_plus, "arrayminus": x_minus,
                 "color": OPERATING_POINT_COLOR, "thickness": 1, "width": 3},
        error_y={"type": "data", "symmetric": False, "array": y_plus, "arrayminus": y_minus,
                 "color": OPERATING_POINT_COLOR, "thickness": 1, "width": 3},
        hovertemplate=hover + "<extra></extra>"))


def _log_range(values: Iterable[float]) -> tuple[float, float]:
    """Log10 axis range covering every drawable value and bound, with 1 (no information) always inside."""
    finite = [v for v in values if np.isfinite(v) and v > 0] + [1.0]
    low, high = math.log10(min(finite)), math.log10(max(finite))
    pad = max(0.15, 0.08 * (high - low))
    return low - pad, high + pad


def lr_forest_figure(table: pd.DataFrame, title: str | None = None, height: int | None = None) -> go.Figure:
    """Forest plot of LR+ (left) and LR- (right) with their intervals, the model on top, from
    core.readers.lr_table. A ratio that cannot be drawn on a log axis (0, infinite, not estimable) is written
    out in its row with the reason; an infinite upper bound runs to the panel's edge and says so on hover."""
    measures = ("LR+", "LR-")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=["LR+ (positive call)", "LR- (negative call)"])
    order = list(dict.fromkeys([MODEL_ID] + [str(r) for r in table["reader_id"]]))
    order = [r for r in order if r in set(table["reader_id"].astype(str))]
    names = {r: _label(r) for r in order}
    colors = reader_colors(order)
    for col, measure in enumerate(measures, start=1):
        part = table[table["measure"] == measure]
        lo_edge, hi_edge = _log_range(pd.concat([part["value"], part["low"], part["high"]]).astype(float))
        fig.add_vline(x=1.0, line={"color": REFERENCE_GREY, "dash": "dash", "width": 1}, row=1, col=col)
        for row in part.to_dict("records"):
            reader = str(row["reader_id"])
            value, low, high = (float(row[k]) for k in ("value", "low", "high"))
            text = (f"<b>{names[reader]}</b>{' (simulated)' if _is_simulated(row.get('kind')) else ''}<br>"
                    f"{measure} {interval_text(value, low, high)}<br>{_label(row.get('method', ''))}"
                    f"<br>cases in this view: {row.get('n_view', 'n/a')}")
            if row.get("reason"):
                text += f"<br>{_label(row['reason'])}"
            if not (np.isfinite(value) and value > 0):
                # 0, infinity or not estimable: no point on a log axis, so write it in the row instead.
                said = (f"{measure} not estimable (hover for why)" if math.isnan(value)
                        else f"{measure} = {_number(value)}: off the log scale")
                fig.add_trace(go.Scatter(
                    x=[10 ** lo_edge], y=[names[reader]], mode="text", textposition="middle right",
                    text=[said], showlegend=False,
                    textfont={"color": colors[reader], "size": 11}, hovertemplate=text + "<extra></extra>"),
                    row=1, col=col)
                continue
            edge = 10 ** hi_edge
            shown_high = high if np.isfinite(high) and high > 0 else (edge if np.isinf(high) else value)
            shown_low = low if np.isfinite(low) and low > 0 else value
            fig.add_trace(go.Scatter(
                x=[value], y=[names[reader]], mode="markers", showlegend=False,
                marker={"color": colors[reader], "size": 11 if reader == MODEL_ID else 9,
                        "symbol": "square" if reader == MODEL_ID else "circle"},
                error_x={"type": "data", "symmetric": False, "array": [shown_high - value],
                         "arrayminus": [value - shown_low], "color": colors[reader], "thickness": 1.8, "width": 5},
                hovertemplate=text + "<extra></extra>"), row=1, col=col)
        tickvals, ticktext = log_ticks(lo_edge, hi_edge)
        fig.update_xaxes(type="log", range=[lo_edge, hi_edge], row=1, col=col, tickvals=tickvals, ticktext=ticktext,
                         title_text=f"{measure} (log scale; 1 = no information)")
    method = ", ".join(sorted({str(m) for m in table.get("method", pd.Series(dtype=str)).dropna()}))
    apply_layout(fig, title=title or f"Likelihood ratios with 95% intervals: {_label(method)}",
                 height=height or max(260, 60 + 42 * len(order)))
    fig.update_yaxes(categoryorder="array", categoryarray=[names[r] for r in reversed(order)], row=1, col=1)
    return fig


def weighted_error_figure(table: pd.DataFrame, title: str | None = None, height: int | None = None) -> go.Figure:
    """Weighted error (mean penalty per image) of the model and of each reader as horizontal bars, the model on
    top, from core.readers.weighted_error_table; under each reader, the model on that reader's own cases."""
    order = list(dict.fromkeys([MODEL_ID] + [str(r) for r in table["reader_id"]]))
    order = [r for r in order if r in set(table["reader_id"].astype(str))]
    colors = reader_colors(order)
    rows = {str(r["reader_id"]): r for r in table.to_dict("records")}
    names = [_label(r) for r in order]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        y=names, x=[rows[r]["weighted_error"] for r in order], orientation="h",
        name="weighted error on the row's own images", marker={"color": [colors[r] for r in order]},
        customdata=[[rows[r]["n"], " (simulated)" if _is_simulated(rows[r].get("kind")) else ""] for r in order],
        hovertemplate="<b>%{y}</b>%{customdata[1]}<br>weighted error %{x:.3f} per image"
                      "<br>images: %{customdata[0]}<extra></extra>"))
    same = [rows[r].get("model_weighted_error_same_cases", float("nan")) for r in order]
    fig.add_trace(go.Bar(
        y=names, x=same, orientation="h", name="model on the same images as the reader",
        marker={"color": "rgba(0,0,0,0)", "line": {"color": MODEL_COLOR, "width": 1.5},
                "pattern": {"shape": "/", "fgcolor": MODEL_COLOR}},
        hovertemplate="model on %{y}'s images<br>weighted error %{x:.3f} per image<extra></extra>"))
    apply_layout(fig, title=title or "Weighted error: model vs readers (lower is better)",
                 x_title="Weighted error (mean penalty per image)", height=height or max(300, 120 + 56 * len(order)))
    fig.update_layout(barmode="group", bargap=0.3, margin={"t": 90},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0.0, "traceorder": "normal"})
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(names)), automargin=True)
    return fig
