"""Decision curve drawn: the model's net benefit, treat all, treat none, readers as points, the penalty threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.plots.experts import MODEL_COLOR, reader_colors
from core.plots.style import BLACK, REFERENCE_GREY, base_layout, safe_text

PENALTY_BAND_COLOR = "rgba(230, 159, 0, 0.18)"   # the palette's orange, light


def decision_curve_figure(curve: pd.DataFrame, readers: pd.DataFrame | None = None,
                          penalty_threshold: tuple[float, float] | None = None, *, model_name: str = "model",
                          title: str | None = "Decision curve") -> go.Figure:
    """curve: decision_curve() output; readers: reader_net_benefits() output at one threshold (column
    `threshold` added by the caller, or the penalty threshold); penalty_threshold: (low, high) risk."""
    finite = curve.replace([np.inf, -np.inf], np.nan)
    prevalence = float(finite["net_benefit_all"].iloc[0]) if len(finite) else 0.0
    top = max(float(np.nanmax(finite[["net_benefit", "net_benefit_all"]].to_numpy(), initial=0.0)), 0.01)
    traces = [
        go.Scatter(x=finite["threshold"], y=finite["net_benefit"], mode="lines", name=safe_text(model_name),
                   line={"color": MODEL_COLOR, "width": 3},
                   hovertemplate="threshold %{x:.2f}<br>net benefit %{y:.4f}<extra>" + safe_text(model_name)
                                 + "</extra>"),
        go.Scatter(x=finite["threshold"], y=finite["net_benefit_all"], mode="lines", name="treat all",
                   line={"color": REFERENCE_GREY, "width": 2},
                   hovertemplate="threshold %{x:.2f}<br>net benefit %{y:.4f}<extra>treat all</extra>"),
        go.Scatter(x=finite["threshold"], y=finite["net_benefit_none"], mode="lines", name="treat none",
                   line={"color": BLACK, "width": 1.5, "dash": "dash"},
                   hovertemplate="threshold %{x:.2f}<br>net benefit 0<extra>treat none</extra>"),
    ]
    if readers is not None and not readers.empty:
        colors = reader_colors(readers["reader_id"])
        for row in readers.itertuples(index=False):
            name = safe_text(row.reader_id) + (" (simulated)" if row.simulated else "")
            traces.append(go.Scatter(
                x=[row.threshold], y=[row.net_benefit], mode="markers", name=name,
                marker={"color": colors[str(row.reader_id)], "size": 12, "line": {"color": "white", "width": 1},
                        "symbol": "diamond" if row.simulated else "circle"},
                hovertemplate=f"{name}<br>threshold %{{x:.2f}}<br>net benefit %{{y:.4f}}<br>"
                              f"{row.images} images<extra></extra>"))
    shapes, annotations = [], []
    if penalty_threshold is not None:
        low, high = penalty_threshold
        if high - low > 1e-9:
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": low, "x1": high, "y0": 0, "y1": 1,
                           "fillcolor": PENALTY_BAND_COLOR, "line": {"width": 0}, "layer": "below"})
            text = f"penalty matrix: {low:.2f} to {high:.2f}"
        else:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": low, "x1": low, "y0": 0, "y1": 1,
                           "line": {"color": "#E69F00", "width": 2, "dash": "dot"}})
            text = f"penalty matrix: {low:.2f}"
        annotations.append({"x": (low + high) / 2, "y": 1.0, "xref": "x", "yref": "paper", "text": text,
                            "showarrow": False, "yanchor": "bottom", "font": {"size": 11}})
    layout = base_layout(title=title, x_title="threshold probability (act when risk ≥ threshold)",
                         y_title="net benefit (true positives per patient, net of harm)", legend_below=True,
                         xaxis={"range": [float(finite["threshold"].min()), float(finite["threshold"].max())]},
                         yaxis={"range": [-0.05 * max(prevalence, top), 1.1 * top]},
                         shapes=shapes, annotations=annotations)
    return go.Figure(traces, layout)
