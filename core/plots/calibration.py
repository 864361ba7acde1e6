"""Reliability diagram: how often the event happened against the predicted probability, with bin sizes below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from core.metrics.calibration import ReliabilityBins
from core.plots.style import REFERENCE_GREY, base_layout, safe_text, series_color


@dataclass(frozen=True)
class ReliabilitySeries:
    """One set of reliability bins to draw (e.g. the top-label confidence, or a referral score)."""

    name: str
    bins: ReliabilityBins
    color: str | None = None


def reliability_figure(series: Sequence[ReliabilitySeries], title: str | None = None,
                       height: int = 520) -> go.Figure:
    """Observed frequency vs mean predicted probability per bin (empty bins left out), the diagonal of perfect
    calibration, and the share of images in each bin underneath (a second panel sharing the x axis)."""
    data = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "name": "perfect calibration",
             "line": {"color": REFERENCE_GREY, "dash": "dot", "width": 1}, "hoverinfo": "skip"}]
    for i, item in enumerate(series):
        color = item.color or series_color(i)
        bins = item.bins
        filled = bins.counts > 0
        total = max(int(bins.counts.sum()), 1)
        name = safe_text(item.name)
        data.append({"type": "scatter", "x": bins.mean_predicted[filled], "y": bins.observed[filled],
                     "mode": "lines+markers", "name": f"{name}: ECE {bins.ece:.3f}", "meta": [name],
                     "line": {"color": color, "width": 2.5}, "marker": {"size": 8, "color": color},
                     "customdata": bins.counts[filled],
                     "hovertemplate": ("<b>%{meta[0]}</b><br>mean predicted %{x:.3f}<br>observed %{y:.3f}"
                                       "<br>%{customdata:,} images<extra></extra>")})
        data.append({"type": "bar", "x": (bins.edges[:-1] + bins.edges[1:]) / 2, "y": bins.counts / total,
                     "width": np.diff(bins.edges) * 0.9 / max(len(series), 1), "xaxis": "x2", "yaxis": "y2",
                     "name": f"{name}: images per bin", "marker": {"color": color, "opacity": 0.6},
                     "showlegend": False, "offsetgroup": str(i), "customdata": bins.counts,
                     "hovertemplate": "%{customdata:,} images (%{y:.1%})<extra></extra>"})
    unit = {"range": [0, 1], "tickformat": ".1f"}
    axis_style = {"showline": True, "linecolor": "#444", "ticks": "outside"}
    layout = base_layout(title=title, height=height, legend_below=True, barmode="group",
                         xaxis={**unit, **axis_style, "anchor": "y", "showticklabels": False},
                         yaxis={**unit, **axis_style, "domain": [0.32, 1.0],
                                "title": {"text": "Observed frequency"}},
                         xaxis2={**unit, **axis_style, "anchor": "y2", "matches": "x",
                                 "title": {"text": "Predicted probability"}},
                         yaxis2={**axis_style, "domain": [0.0, 0.24], "anchor": "x2", "tickformat": ".0%",
                                 "title": {"text": "Images"}, "rangemode": "tozero"})
    return go.Figure(data=data, layout=layout)
