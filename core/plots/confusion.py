"""Confusion-matrix heatmaps: counts in the cells, colour by row share (default), count or column share."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from core.errors import InputError
from core.metrics.multiclass import ConfusionMatrix
from core.plots.style import BLACK, DIVERGING_SCALE, SEQUENTIAL_SCALE, base_layout, safe_text

# How the colour is chosen; the text in each cell always shows the count.
COLOUR_MODES = {
    "row": "Share of the true class (row-normalised)",
    "count": "Number of images",
    "column": "Share of the calls (column-normalised)",
}
# Name of the invisible marker trace that makes cells clickable (plotly heatmaps do not report clicks reliably).
CELL_TRACE_NAME = "cells"
# The third outcome's column when the model refers cases (core.metrics.multiclass.ReferralConfusion).
REFERRED_LABEL = "Referred to a reader"


def _cell_text(counts: np.ndarray, shares: np.ndarray | None) -> np.ndarray:
    text = np.empty(counts.shape, dtype=object)
    for (i, j), count in np.ndenumerate(counts):
        share = shares[i, j] if shares is not None else np.nan
        text[i, j] = f"{int(count):,}" + (f"<br>{share:.0%}" if np.isfinite(share) else "")
    return text


def _cell_markers(classes: Sequence[str], counts: np.ndarray) -> dict:
    xs, ys, data = [], [], []
    for (i, j), count in np.ndenumerate(counts):
        ys.append(classes[i])
        xs.append(classes[j])
        data.append([i, j, int(count)])
    return {"type": "scatter", "x": xs, "y": ys, "mode": "markers", "name": CELL_TRACE_NAME, "showlegend": False,
            "customdata": data, "marker": {"size": 40, "opacity": 0.0, "color": BLACK},
            "hovertemplate": "true %{y}, called %{x}: %{customdata[2]:,} images<br>click to list these cases"
                             "<extra></extra>"}


def cell_font_size(k: int) -> int:
    """Cell text size for a k x k matrix: two lines ("1,000" over "100%") must fit a cell of a half-width figure
    (about 65 px for four classes), so the text shrinks as the classes grow."""
    return int(max(9, min(14, 56 // max(k, 1))))


# A slim colour bar with a short title leaves the cells the width (the long title moved to the hover and caption).
_COLORBAR = {"thickness": 12, "len": 0.9}


def _matrix_layout(title, x_title, y_title, k: int, height: int | None, **extra) -> dict:
    return base_layout(title=title, x_title=x_title, y_title=y_title, height=height or max(320, 90 * k + 140),
                       xaxis={"type": "category", "showgrid": False, "side": "bottom"},
                       yaxis={"type": "category", "showgrid": False, "autorange": "reversed"}, **extra)


def confusion_figure(confusion: ConfusionMatrix, colour_by: str = "row", title: str | None = None,
                     x_title: str = "Called class (model)", y_title: str = "True class",
                     selected: tuple[int, int] | None = None, clickable: bool = True,
                     height: int | None = None, referred=None) -> go.Figure:
    """Heatmap of `confusion` (rows = true, columns = called); cells show the count and the row share.

    colour_by: 'row' (default: each row sums to 100%, so small classes are as visible as large ones),
    'count' or 'column'. `selected` outlines one cell; `clickable` adds invisible markers for cell clicks.
    `referred` (images referred to a reader per true class): `confusion` then counts the calls made, and a last
    column "Referred to a reader" holds the referrals; row shares include it.
    """
    if colour_by not in COLOUR_MODES:
        raise InputError(f"confusion colour must be one of {list(COLOUR_MODES)}, got {colour_by!r}")
    classes = [safe_text(c) for c in confusion.classes]
    counts = np.asarray(confusion.counts)
    columns = list(classes)
    if referred is not None:
        referred = np.asarray(referred, dtype=np.int64).reshape(-1)
        if referred.size != len(classes):
            raise InputError(f"referrals per true class: need {len(classes)} counts, got {referred.size}")
        counts = np.column_stack([counts, referred])
        columns.append(REFERRED_LABEL)
    # The shares are ConfusionMatrix's (its normalisations hold for the k x (k + 1) table with referrals too).
    table = ConfusionMatrix(confusion.classes, counts)
    by_row, by_column = table.row_normalised, table.column_normalised
    shares = by_row if colour_by != "column" else by_column
    z = {"row": by_row, "count": counts.astype(float), "column": by_column}[colour_by]
    zmax = 1.0 if colour_by != "count" else max(float(counts.max()), 1.0)
    data = [{"type": "heatmap", "z": z, "x": columns, "y": classes, "zmin": 0.0, "zmax": zmax,
             "colorscale": SEQUENTIAL_SCALE, "text": _cell_text(counts, shares), "texttemplate": "%{text}",
             "textfont": {"size": cell_font_size(len(classes))}, "xgap": 2, "ygap": 2,
             "colorbar": {**_COLORBAR, "title": {"text": COLOUR_MODES[colour_by], "side": "right"},
                          "tickformat": ".0%" if colour_by != "count" else ",d"},
             "hovertemplate": "true %{y}<br>called %{x}<br>%{text}<extra></extra>"}]
    if clickable:
        data.append(_cell_markers(classes, counts[:, :len(classes)]))
    shapes = []
    if selected is not None:
        i, j = selected
        shapes.append({"type": "rect", "x0": j - 0.5, "x1": j + 0.5, "y0": i - 0.5, "y1": i + 0.5,
                       "line": {"color": BLACK, "width": 3}})
    return go.Figure(data=data, layout=_matrix_layout(title, x_title, y_title, len(classes), height, shapes=shapes))


def count_change_figure(change: np.ndarray, classes: Sequence[str], title: str | None = None) -> go.Figure:
    """Diverging heatmap of how many images move into (+) or out of (-) each cell between two sets of calls."""
    change = np.asarray(change, dtype=float)
    classes = [safe_text(c) for c in classes]
    limit = max(float(np.abs(change).max()), 1.0)
    text = np.vectorize(lambda v: f"{int(v):+,}" if v else "0", otypes=[object])(change)
    data = [{"type": "heatmap", "z": change, "x": classes, "y": classes, "zmin": -limit, "zmax": limit,
             "colorscale": DIVERGING_SCALE, "text": text, "texttemplate": "%{text}",
             "textfont": {"size": cell_font_size(len(classes))}, "xgap": 2, "ygap": 2,
             "colorbar": {**_COLORBAR, "title": {"text": "Change in images", "side": "right"}},
             "hovertemplate": "true %{y}<br>called %{x}<br>change %{text}<extra></extra>"}]
    return go.Figure(data=data, layout=_matrix_layout(title, "Called class", "True class", len(classes), None))
