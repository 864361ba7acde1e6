"""An MRMC result drawn: each reader's figure of merit per treatment, and the reader-averaged means with intervals."""

from __future__ import annotations

import plotly.graph_objects as go

from core.plots.experts import reader_colors
from core.plots.style import BLACK, base_layout, safe_text

_FIGURE_TITLES = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity"}


def mrmc_readers_figure(result, *, title: str | None = None) -> go.Figure:
    """result: an MrmcResult. One line per reader across treatments; black bars: the treatment means
    with their random-readers, random-cases intervals (each treatment's own data)."""
    treatments = [safe_text(t) for t in result.treatment_names]
    colors = reader_colors(result.reader_names)
    traces = []
    for j, reader in enumerate(result.reader_names):
        name = safe_text(reader)
        traces.append(go.Scatter(
            x=treatments, y=result.figures[:, j], mode="lines+markers", name=name,
            line={"color": colors[str(reader)], "width": 1.5}, marker={"size": 8},
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    intervals = [result.rrrc.treatments[t] for t in result.treatment_names]
    means = [t.estimate for t in intervals]
    traces.append(go.Scatter(
        x=treatments, y=means, mode="markers", name=f"mean over readers ({1 - result.alpha:.0%} CI)",
        marker={"color": BLACK, "size": 14, "symbol": "diamond-wide"},
        error_y={"type": "data", "symmetric": False, "color": BLACK, "thickness": 2,
                 "array": [t.ci95[1] - t.estimate for t in intervals],
                 "arrayminus": [t.estimate - t.ci95[0] for t in intervals]},
        hovertemplate="%{x}: mean %{y:.3f}<extra></extra>"))
    figure = _FIGURE_TITLES.get(result.figure, result.figure)
    layout = base_layout(title=title or f"Reader {figure} by treatment", x_title="treatment (reading condition)",
                         y_title=figure, legend_below=True, xaxis={"type": "category"})
    return go.Figure(traces, layout)
