"""Figure builders of the experts page: they draw core.readers' tables faithfully and escape user text."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task
from core.plots.experts import (MODEL_COLOR, interval_text, lr_forest_figure, reader_colors, reader_roc_figure,
                                weighted_error_figure)
from core.readers import (compare_readers_to_model, lr_table, model_metrics, model_roc, roc_points,
                          simulate_readers, weighted_error_table)

TASK = get_task("oct-kermany")
EVIL = "<a href='http://example.invalid'>dr evil</a>"


@pytest.fixture(scope="module")
def tables():
    """A small predictions table with a model better than chance, and simulated readers plus one more."""
    rng = np.random.default_rng(3)
    labels = np.repeat(TASK.classes, 15)
    truth = np.array([TASK.class_index(c) for c in labels])
    logits = rng.normal(size=(len(labels), 4))
    logits[np.arange(len(labels)), truth] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = pd.DataFrame({"image_id": [f"img-{i}" for i in range(len(labels))], "label": labels})
    for j, name in enumerate(TASK.classes):
        predictions[f"prob_{name}"] = probs[:, j]
    predictions["predicted"] = np.asarray(TASK.classes)[probs.argmax(axis=1)]
    readings = simulate_readers(predictions, TASK, seed=1)
    extra = readings[readings["reader_id"] == "SIMULATED-generalist"].assign(reader_id=EVIL)
    readings = pd.concat([readings, extra], ignore_index=True)
    compare = compare_readers_to_model(readings, predictions, TASK)
    return {"predictions": predictions, "readings": readings, "compare": compare,
            "points": roc_points(compare), "roc": model_roc(predictions, TASK),
            "model": model_metrics(predictions, TASK)}


def test_interval_text_formats_bounds_and_missing_values():
    assert interval_text(0.8333, 0.4365, 0.9699) == "0.83 (0.44 to 0.97)"
    assert interval_text(-1.0, -1.0, -0.45) == "-1.00 (-1.00 to -0.45)"
    assert interval_text(-0.0001, -0.0002, 0.0) == "0.00 (0.00 to 0.00)"  # never "-0.00"
    assert interval_text(float("nan"), float("nan"), float("nan")) == "n/a"
    assert interval_text(3.0, 0.97, math.inf) == "3.00 (0.97 to ∞)"


def test_reader_colors_keep_blue_for_the_model():
    colors = reader_colors(["model", "a", "b"])
    assert colors["model"] == MODEL_COLOR
    assert MODEL_COLOR not in (colors["a"], colors["b"]) and colors["a"] != colors["b"]


def test_roc_figure_places_each_reader_with_crosshairs(tables):
    fig = reader_roc_figure(tables["roc"], tables["points"], tables["model"])
    curve = next(t for t in fig.data if t.name.startswith("model ROC"))
    np.testing.assert_allclose(curve.x, tables["roc"]["fpr"])
    np.testing.assert_allclose(curve.y, tables["roc"]["tpr"])
    assert "AUC" in curve.name
    for row in tables["points"].to_dict("records"):
        trace = next(t for t in fig.data if t.name == html.escape(row["reader_id"], quote=False))
        assert (trace.x[0], trace.y[0]) == (row["fpr"], row["tpr"])
        assert trace.error_x.array[0] == pytest.approx(row["fpr_high"] - row["fpr"])
        assert trace.error_x.arrayminus[0] == pytest.approx(row["fpr"] - row["fpr_low"])
        assert trace.error_y.array[0] == pytest.approx(row["tpr_high"] - row["tpr"])
        assert trace.error_y.arrayminus[0] == pytest.approx(row["tpr"] - row["tpr_low"])
        assert f"sensitivity {interval_text(row['tpr'], row['tpr_low'], row['tpr_high'])}" in trace.hovertemplate
        assert ("(simulated)" in trace.hovertemplate) == row["reader_id"].startswith("SIMULATED-")
    point = next(t for t in fig.data if t.name.startswith("model at"))
    assert point.x[0] == pytest.approx(1 - tables["model"]["specificity"])
    assert point.y[0] == pytest.approx(tables["model"]["sensitivity"])
    assert "1 - specificity" in fig.layout.xaxis.title.text and "Sensitivity" in fig.layout.yaxis.title.text


def test_figures_escape_reader_codes(tables):
    figs = [reader_roc_figure(tables["roc"], tables["points"]),
            lr_forest_figure(lr_table(tables["readings"], tables["predictions"], TASK)),
            weighted_error_figure(weighted_error_table(tables["readings"], tables["predictions"], TASK))]
    for fig in figs:
        text = fig.to_json()
        assert "<a href" not in text and "&lt;a href" in text


def test_roc_curve_is_thinned_for_display_only():
    n = 10_000
    roc = {"fpr": np.linspace(0, 1, n), "tpr": np.sqrt(np.linspace(0, 1, n)), "view": "v", "auc": None}
    empty = pd.DataFrame(columns=["reader_id", "kind", "fpr", "fpr_low", "fpr_high", "tpr", "tpr_low", "tpr_high",
                                  "n_view"])
    curve = reader_roc_figure(roc, empty, max_curve_points=500).data[1]
    assert len(curve.x) <= 500 and curve.x[0] == 0 and curve.x[-1] == 1 and curve.y[-1] == 1


def test_forest_plot_draws_values_and_states_what_it_cannot_draw(tables):
    table = lr_table(tables["readings"], tables["predictions"], TASK, lr_ci="koopman")
    # One reader with a zero LR- (no false negatives) must be written out, not dropped.
    degenerate = pd.DataFrame([{"reader_id": "perfect", "kind": "reader", "measure": "LR-", "value": 0.0,
                                "low": 0.0, "high": 0.2, "method": "Koopman score (1984)", "n_view": 60,
                                "reason": "LR-: the false-negative rate is 0"}])
    unbounded = pd.DataFrame([{"reader_id": "unbounded", "kind": "reader", "measure": "LR+", "value": 5.0,
                               "low": 1.2, "high": math.inf, "method": "Koopman score (1984)", "n_view": 60,
                               "reason": ""}])
    fig = lr_forest_figure(pd.concat([table, degenerate, unbounded], ignore_index=True))
    arm = next(t for t in fig.data if t.mode == "markers" and t.y[0] == "unbounded")
    assert arm.error_x.array[0] > 0 and "∞" in arm.hovertemplate  # runs to the panel's edge, says so
    fig = lr_forest_figure(pd.concat([table, degenerate], ignore_index=True))
    markers = [t for t in fig.data if t.mode == "markers"]
    drawable = table[np.isfinite(table["value"]) & (table["value"] > 0)]
    assert len(markers) == len(drawable)
    for row in drawable.to_dict("records"):
        assert any(t.x[0] == pytest.approx(row["value"]) and row["measure"] in t.hovertemplate for t in markers)
    written = [t for t in fig.data if t.mode == "text"]
    assert any("LR- = 0.00" in t.text[0] and t.y[0] == "perfect" for t in written)
    assert all(t.hovertemplate for t in written)  # the reason is on hover
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert "Koopman" in fig.layout.title.text
    # The model is the top row.
    assert list(fig.layout.yaxis.categoryarray)[-1] == "model"


def test_forest_interval_lengths_follow_the_method(tables):
    log = lr_forest_figure(lr_table(tables["readings"], tables["predictions"], TASK, lr_ci="log"))
    koopman = lr_forest_figure(lr_table(tables["readings"], tables["predictions"], TASK, lr_ci="koopman"))
    arms = [[tuple(t.error_x.array) for t in fig.data if t.mode == "markers"] for fig in (log, koopman)]
    assert arms[0] != arms[1]


def test_weighted_error_bars_match_the_table(tables):
    table = weighted_error_table(tables["readings"], tables["predictions"], TASK)
    fig = weighted_error_figure(table)
    own, same = fig.data
    assert list(own.y)[0] == "model" and list(fig.layout.yaxis.categoryarray)[-1] == "model"  # model on top
    by_reader = table.set_index("reader_id")
    for name, value in zip(own.y, own.x):
        reader = next(r for r in by_reader.index if html.escape(r, quote=False) == name)
        assert value == pytest.approx(by_reader.loc[reader, "weighted_error"])
    np.testing.assert_allclose(np.asarray(same.x[1:], float),
                               by_reader.loc[[r for r in table["reader_id"] if r != "model"],
                                             "model_weighted_error_same_cases"].to_numpy(), equal_nan=True)
    assert "Weighted error" in fig.layout.xaxis.title.text


def test_reader_colours_do_not_depend_on_row_order(tables):
    """The Experts page (rows by performance) and the report (rows by code) draw a reader in the same colour."""
    points = tables["points"]
    def marker_colors(frame):
        fig = reader_roc_figure(tables["roc"], frame)
        return {t.name: t.marker.color for t in fig.data if t.mode == "markers"}
    assert marker_colors(points) == marker_colors(points.iloc[::-1].reset_index(drop=True))
    assert reader_colors(["r2", "r1", "model"]) == reader_colors(["model", "r1", "r2"])


def test_reader_roc_is_square():
    from tests.figure_layout import rendered_boxes
    roc = {"fpr": np.linspace(0, 1, 20), "tpr": np.sqrt(np.linspace(0, 1, 20)), "view": "urgent referral"}
    empty = pd.DataFrame(columns=["reader_id", "fpr", "fpr_low", "fpr_high", "tpr", "tpr_low", "tpr_high"])
    boxes = rendered_boxes(reader_roc_figure(roc, empty), 900, 520)
    xs = sorted((b["x0"] + b["x1"]) / 2 for b in boxes["xticks"])
    ys = sorted((b["y0"] + b["y1"]) / 2 for b in boxes["yticks"])
    assert xs[-1] - xs[0] == pytest.approx(ys[-1] - ys[0], rel=0.02)


def test_a_zero_width_interval_is_not_shown_as_information():
    """Dashboard (interval_text) and report (core.report.format) both drop "0.00 (0.00 to 0.00)"."""
    from core.report.format import interval

    assert interval_text(0.0, 0.0, 0.0, reason="one rater used one category") == \
        "0.00 (no interval: one rater used one category)"
    assert interval({"value": 1.0, "low": 1.0, "high": 1.0, "reason": "complete separation"}) == \
        "1.000 (no interval: complete separation)"
    assert interval({"value": 1.0, "low": 1.0, "high": 1.0}) == "1.000 (no interval: the interval has zero width)"
    assert interval_text(0.83, 0.44, 0.97) == "0.83 (0.44 to 0.97)"
    assert interval_text(math.inf, 7.01, math.inf) == "∞ (7.01 to ∞)"


def test_dashboard_cards_and_legends_drop_zero_width_intervals():
    from core.metrics.intervals import Interval
    from core.plots.roc import auc_label
    from dashboard.evaluation_ui import interval_text as card_text

    point = Interval(1.0, 1.0, 1.0, "DeLong", n=10, reason="")
    assert "1.000 to 1.000" not in auc_label("run", point) and "no interval" in auc_label("run", point)
    assert card_text(point, percent=False) == "1.000 (no interval: the interval has zero width)"
