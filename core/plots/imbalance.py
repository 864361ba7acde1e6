"""Class-imbalance figures: class shares per split (train vs test), and PPV/NPV as the prevalence changes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.plots.style import BLUE, ORANGE, REFERENCE_GREY, base_layout, class_colors, safe_text

# Splits are told apart by fill pattern, so the bars keep their class colour.
_SPLIT_PATTERNS = ("", "/", ".", "x", "-")


def class_distribution_figure(distribution: pd.DataFrame, classes: Sequence[str],
                              title: str | None = None) -> go.Figure:
    """Grouped bars of each class's share of the images per split (columns split, class, images, share)."""
    colors = class_colors(classes)
    labels = [safe_text(c) for c in classes]
    data = []
    for i, (split, part) in enumerate(distribution.groupby("split", sort=False)):
        part = part.set_index("class").reindex(list(classes))
        images = part["images"].astype(float).to_numpy()
        data.append({
            "type": "bar", "x": labels, "y": part["share"].to_numpy(dtype=float), "name": safe_text(split),
            "meta": [safe_text(split)], "customdata": images,
            "marker": {"color": [colors[c] for c in classes],
                       "pattern": {"shape": _SPLIT_PATTERNS[i % len(_SPLIT_PATTERNS)], "fgcolor": "white",
                                   "solidity": 0.35},
                       "line": {"color": "#333", "width": 1}},
            "text": [f"{int(v):,}" if np.isfinite(v) else "" for v in images], "textposition": "outside",
            "hovertemplate": "<b>%{meta[0]}</b><br>%{x}: %{y:.1%} (%{customdata:,} images)<extra></extra>"})
    layout = base_layout(title=title, x_title="Class", y_title="Share of the split's images",
                         yaxis={"tickformat": ".0%", "rangemode": "tozero"}, barmode="group",
                         legend={"title": {"text": "Split (pattern)"}})
    return go.Figure(data=data, layout=layout)


def predictive_values_figure(curve: pd.DataFrame, prevalence: float | None = None,
                             test_prevalence: float | None = None, title: str | None = None) -> go.Figure:
    """PPV and NPV (with interval bands) against prevalence on a log axis, chosen and test prevalences marked."""
    x = curve["prevalence"].to_numpy(dtype=float)
    data = []
    for key, label, color in (("ppv", "PPV (positive predictive value)", BLUE),
                              ("npv", "NPV (negative predictive value)", ORANGE)):
        high = curve[f"{key}_high"].to_numpy(dtype=float)
        low = curve[f"{key}_low"].to_numpy(dtype=float)
        data.append({"type": "scatter", "x": np.concatenate([x, x[::-1]]), "y": np.concatenate([high, low[::-1]]),
                     "fill": "toself", "fillcolor": color, "opacity": 0.18, "line": {"width": 0},
                     "hoverinfo": "skip", "showlegend": False, "name": f"{label} interval"})
        data.append({"type": "scatter", "x": x, "y": curve[key].to_numpy(dtype=float), "mode": "lines",
                     "name": label, "line": {"color": color, "width": 2.5},
                     "hovertemplate": f"prevalence %{{x:.3f}}<br>{key.upper()} %{{y:.3f}}<extra></extra>"})
    # Vertical marks as traces: shapes and annotations need log-transformed positions on a log axis.
    marks = ((prevalence, "chosen prevalence", "dash", "#333"),
             (test_prevalence, "test-set prevalence", "dot", REFERENCE_GREY))
    for value, label, dash, color in marks:
        if value is not None and np.isfinite(value):
            data.append({"type": "scatter", "x": [value, value], "y": [0, 1], "mode": "lines",
                         "name": f"{label} {value:.3g}", "line": {"color": color, "dash": dash, "width": 1.5},
                         "hovertemplate": f"{label} {value:.3g}<extra></extra>"})
    # One labelled tick per decade (minor ticks at 2 and 5 unlabelled): labels at 1-2-5 ran together in a half-width
    # column.
    layout = base_layout(title=title, x_title="Prevalence of the condition (log scale)", y_title="Predictive value",
                         legend_below=True, xaxis={"type": "log", "tickformat": ".3~g", "dtick": 1,
                                                                  "minor": {"dtick": "D2", "showgrid": True}},
                         yaxis={"range": [0, 1.02], "tickformat": ".0%"})
    return go.Figure(data=data, layout=layout)
