"""Refer when unsure: the risk-coverage curve (share of cases the model calls against the error among those calls)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.plots.style import BLACK, BLUE, ORANGE, REFERENCE_GREY, base_layout, safe_text


def risk_coverage_figure(coverage, error, *, target: float | None = None, band_point: tuple[float, float] | None = None,
                         band_label: str = "stored band", extra_curves=(), title: str | None = None,
                         height: int = 420) -> go.Figure:
    """Error among the calls made (y) against the share of cases called (x), one point per band width, the
    widest band on the left; a dashed line at the target error and a marker at the chosen band.

    extra_curves: (name, coverage, error) of further curves (e.g. the calibration cases beside the test set)."""
    data = []
    curves = [("this test set", coverage, error, BLUE)] + [(name, c, e, ORANGE) for name, c, e in extra_curves]
    for name, x, y, color in curves:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        data.append({"type": "scatter", "x": x[keep], "y": y[keep], "mode": "lines", "name": safe_text(name),
                     "line": {"color": color, "width": 2.5, "shape": "hv"},
                     "hovertemplate": "calls %{x:.1%} of the cases<br>error among calls %{y:.1%}<extra></extra>"})
    if target is not None and np.isfinite(target):
        data.append({"type": "scatter", "x": [0.0, 1.0], "y": [target, target], "mode": "lines",
                     "name": f"target error {target:.0%}", "line": {"color": REFERENCE_GREY, "dash": "dash"},
                     "hoverinfo": "skip"})
    if band_point is not None and all(np.isfinite(band_point)):
        data.append({"type": "scatter", "x": [band_point[0]], "y": [band_point[1]], "mode": "markers",
                     "name": safe_text(band_label), "marker": {"color": BLACK, "size": 11, "symbol": "circle-open",
                                                              "line": {"width": 2.5}},
                     "hovertemplate": "calls %{x:.1%}<br>error among calls %{y:.1%}<extra></extra>"})
    layout = base_layout(title=title, x_title="Share of cases called (coverage)",
                         y_title="Error among the calls made", height=height, legend_below=True,
                         xaxis={"tickformat": ".0%", "range": [0, 1.02]},
                         yaxis={"tickformat": ".0%", "rangemode": "tozero"})
    return go.Figure(data=data, layout=layout)
