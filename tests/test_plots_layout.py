"""Figures measured as the browser draws them (tests/figure_layout.py): no tick labels running together, the
legend clear of the axis title, cell text inside its cell, ROC plots square, at the widths the pages give them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.metrics.multiclass import ConfusionMatrix
from core.metrics.operating import RocCurve
from core.plots import confusion_figure, count_change_figure, roc_figure, RocSeries
from core.plots.imbalance import predictive_values_figure
from tests.figure_layout import overlapping_pairs, overlaps, rendered_boxes

# A half-width column of the wide layout on a 1280 px screen, and a phone-sized figure.
HALF_WIDTH = 430
NARROW = 380
CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
# Near-perfect calls: "1,000" over "100%" is the widest text a cell gets.
COUNTS = np.array([[980, 10, 8, 2], [5, 990, 3, 2], [0, 4, 996, 0], [0, 0, 0, 1000]])


def _curve() -> pd.DataFrame:
    grid = np.unique(np.concatenate([np.logspace(-3, np.log10(0.99), 80), [0.5]]))
    curve = pd.DataFrame({"prevalence": grid, "ppv": grid * 0.9 / (grid * 0.9 + (1 - grid) * 0.1),
                          "npv": 1 - grid * 0.1})
    for key in ("ppv", "npv"):
        curve[f"{key}_low"] = curve[key] * 0.95
        curve[f"{key}_high"] = np.minimum(curve[key] * 1.05, 1.0)
    return curve


@pytest.mark.parametrize("width", [NARROW, HALF_WIDTH, 900])
def test_predictive_value_ticks_do_not_run_together_and_the_legend_clears_the_title(width):
    boxes = rendered_boxes(predictive_values_figure(_curve(), 0.1, 0.25, title="Predictive values vs prevalence"),
                           width, 440)
    assert len(boxes["xticks"]) >= 3
    assert overlapping_pairs(boxes["xticks"]) == []
    (title,), (legend,) = boxes["xtitle"], boxes["legend"]
    assert not overlaps(title, legend), (title, legend)
    assert legend["y0"] >= title["y1"]
    assert all(legend["y0"] >= tick["y1"] for tick in boxes["xticks"])


def _cells_fit(boxes: dict, k: int) -> None:
    ticks = sorted((b["x0"] + b["x1"]) / 2 for b in boxes["xticks"])
    assert len(ticks) == k
    cell_width = float(np.mean(np.diff(ticks)))
    assert len(boxes["cells"]) == k * k
    widest = max(b["x1"] - b["x0"] for b in boxes["cells"])
    assert widest <= cell_width - 4, (widest, cell_width)
    assert overlapping_pairs(boxes["cells"], pad=1.0) == []


@pytest.mark.parametrize("k", [4, 8])
def test_confusion_cell_text_fits_its_cell_at_half_width(k):
    classes = tuple(f"class {i}" for i in range(k)) if k != 4 else CLASSES
    counts = np.full((k, k), 3) + np.diag(np.full(k, 997)) if k != 4 else COUNTS
    fig = confusion_figure(ConfusionMatrix(classes, counts), clickable=False, title="Most probable class (argmax)")
    _cells_fit(rendered_boxes(fig, HALF_WIDTH), k)


def test_change_matrix_text_fits_at_half_width():
    change = np.array([[-120, 60, 40, 20], [10, -15, 5, 0], [0, 0, 0, 0], [1000, -500, -250, -250]])
    _cells_fit(rendered_boxes(count_change_figure(change, CLASSES, title="Change (rule - argmax)"), HALF_WIDTH), 4)


@pytest.mark.parametrize("width", [HALF_WIDTH, 900])
def test_roc_plot_area_is_square(width):
    x = np.linspace(0, 1, 50)
    fig = roc_figure([RocSeries("a long run name that wraps the legend", RocCurve(x, np.sqrt(x), x))], title="ROC")
    boxes = rendered_boxes(fig, width, 480)
    xs = sorted((b["x0"] + b["x1"]) / 2 for b in boxes["xticks"])
    ys = sorted((b["y0"] + b["y1"]) / 2 for b in boxes["yticks"])
    # Ticks 0.0 .. 1.0 on both axes: the distance from 0 to 1 is the same on screen.
    assert xs[-1] - xs[0] == pytest.approx(ys[-1] - ys[0], rel=0.02)


@pytest.mark.parametrize("width", [HALF_WIDTH, 900])
def test_reader_roc_plot_area_is_square(width):
    """The Experts page's and the report's readers-on-the-ROC figure (one function draws both)."""
    from core.plots.experts import reader_roc_figure

    x = np.linspace(0, 1, 50)
    points = pd.DataFrame({"reader_id": ["dr-a", "a reader with a long code"], "fpr": [0.1, 0.3],
                           "fpr_low": [0.05, 0.2], "fpr_high": [0.2, 0.4], "tpr": [0.8, 0.9],
                           "tpr_low": [0.7, 0.8], "tpr_high": [0.9, 0.95], "kind": ["human", "human"]})
    boxes = rendered_boxes(reader_roc_figure({"fpr": x, "tpr": np.sqrt(x)}, points, title="Readers"), width, 520)
    xs = sorted((b["x0"] + b["x1"]) / 2 for b in boxes["xticks"])
    ys = sorted((b["y0"] + b["y1"]) / 2 for b in boxes["yticks"])
    assert len(xs) >= 3 and len(ys) >= 3
    assert xs[-1] - xs[0] == pytest.approx(ys[-1] - ys[0], rel=0.02)


@pytest.mark.parametrize("width", [HALF_WIDTH, 900])
def test_cross_validation_curve_legend_and_axis_titles_stay_clear(width):
    from core.plots.training import cv_curve_figure

    cv = pd.DataFrame({"C": [0.0003, 0.001, 0.01, 0.1, 1.0], "log_loss": [0.7, 0.6, 0.4, 0.35, 0.5],
                       "folds_done": [3] * 5, "folds": [5] * 5, "chosen": [False, False, False, True, False]})
    fig = cv_curve_figure(cv)
    boxes = rendered_boxes(fig, width, fig.layout.height)
    assert not any(overlaps(legend, title) for legend in boxes["legend"] for title in boxes["xtitle"])
    (ytitle,) = boxes["ytitle"]
    assert ytitle["y0"] >= 0 and ytitle["y1"] <= fig.layout.height  # the axis title is not cut off
