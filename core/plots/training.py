"""Training-curve figures: loss and accuracy against the step, raw (faint) and smoothed, train and validation."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.plots.style import base_layout

# Okabe-Ito blue and orange: distinguishable with every common colour-vision deficiency.
SPLIT_COLOURS = {"train": "#0072B2", "validation": "#E69F00"}
_PANELS = (("loss", "Loss (cross-entropy)"), ("accuracy", "Accuracy (fraction correct)"))


def training_curves_figure(curves: pd.DataFrame, smoothing: float | None = None, height: int = 340) -> go.Figure:
    """Two panels (loss, accuracy) from core.train.monitor.training_curves' table. Draws, computes nothing."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for _, title in _PANELS], horizontal_spacing=0.1)
    for col, (metric, _title) in enumerate(_PANELS, start=1):
        for split, colour in SPLIT_COLOURS.items():
            part = curves[(curves["metric"] == metric) & (curves["split"] == split)]
            if part.empty:
                continue
            # Validation has one point per epoch, and short runs few train points: draw those as markers too.
            markers = split == "validation" or len(part) <= 30
            fig.add_trace(go.Scatter(
                x=part["step"], y=part["value"], mode="lines+markers" if markers else "lines",
                line={"color": colour, "width": 1}, opacity=0.3, name=f"{split} (raw)", legendgroup=f"{split}-raw",
                showlegend=col == 1, hovertemplate=f"{split} {metric} (raw)<br>step %{{x}}: %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=part["step"], y=part["smoothed"], mode="lines+markers" if markers else "lines",
                line={"color": colour, "width": 2.5}, name=f"{split} (smoothed)", legendgroup=f"{split}-smoothed",
                showlegend=col == 1,
                hovertemplate=f"{split} {metric} (smoothed)<br>step %{{x}}: %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text="Optimisation step (batches)", row=1, col=col)
    fig.update_yaxes(title_text="Loss", row=1, col=1)
    fig.update_yaxes(title_text="Accuracy (0-1)", range=[0, 1.02], row=1, col=2)
    caption = f" - smoothing {smoothing:g} (TensorBoard-style debiased EMA)" if smoothing is not None else ""
    fig.update_layout(height=height, margin={"l": 50, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.25}, title={"text": "Training curves" + caption,
                                                                     "font": {"size": 14}})
    return fig


def cv_curve_figure(cv: pd.DataFrame, height: int = 360) -> go.Figure:
    """The logistic head's cross-validation curve (core.train.monitor.cv_curve's table): held-out log loss against
    the regularisation strength C on a log axis, the chosen C marked. Draws, computes nothing."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=cv["C"], y=cv["log_loss"], mode="lines+markers", name="held-out log loss",
                             line={"color": SPLIT_COLOURS["validation"], "width": 2.5},
                             hovertemplate="C %{x:g}: log loss %{y:.4f}<extra></extra>"))
    chosen = cv[cv["chosen"]]
    if not chosen.empty:
        fig.add_trace(go.Scatter(x=chosen["C"], y=chosen["log_loss"], mode="markers", name="chosen",
                                 marker={"symbol": "star", "size": 16, "color": SPLIT_COLOURS["train"]},
                                 hovertemplate="chosen C %{x:g}: log loss %{y:.4f}<extra></extra>"))
    folds_done, folds = (cv["folds_done"].iloc[0], cv["folds"].iloc[0]) if len(cv) else (None, None)
    progress = (f" - {int(folds_done)} of {int(folds)} folds" if folds_done is not None and folds_done == folds_done
                and folds_done < folds else "")
    # The shared layout: its legend below is anchored under the axis title (a fixed y = -0.3 can cover it).
    fig.update_layout(base_layout(title="Patient-grouped cross-validation of the logistic head" + progress,
                                  x_title="Regularisation strength C (inverse; larger = weaker)",
                                  y_title="Held-out log loss (lower: better)", height=height, legend_below=True,
                                  xaxis={"type": "log"}))
    return fig
