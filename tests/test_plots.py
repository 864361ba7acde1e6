"""Figure builders: trace counts, the shared class colours, display-only downsampling, escaped user names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.metrics import BinaryScores, ConfusionMatrix, diagnostic_metrics, reliability_bins
from core.metrics.dashboard import class_distribution, precision_recall, predictive_value_curve
from core.plots import (CELL_TRACE_NAME, OKABE_ITO, PointMarker, PrSeries, ReliabilitySeries, RocSeries, auc_label,
                        class_color, class_colors, class_distribution_figure, compare_roc_figure, confusion_figure,
                        count_change_figure, display_curve, display_indices, learning_curve_figure,
                        metric_bars_figure, pr_figure, predictive_values_figure, reliability_figure, roc_figure,
                        safe_text, series_colors)


@pytest.fixture(scope="module")
def scores() -> BinaryScores:
    rng = np.random.default_rng(0)
    truth = rng.random(20_000) < 0.3
    return BinaryScores(truth, rng.normal(size=truth.size) + truth)


def test_class_colours_follow_the_task_order_and_the_okabe_ito_palette():
    task = get_task("oct-kermany")
    colours = class_colors(task.classes)
    assert list(colours) == list(task.classes)
    assert set(colours.values()) <= set(OKABE_ITO)
    assert len(set(colours.values())) == len(task.classes)
    # The same function gives the same colour whoever asks (pages never pick their own).
    assert all(class_color(task.classes, c) == colours[c] for c in task.classes)
    assert class_colors(task.classes) == colours
    # Yellow is the palette's last line colour: hard to see as a thin line.
    assert "#F0E442" not in colours.values()


def test_display_indices_keep_both_ends_and_cap_the_points(scores):
    curve = scores.curve(drop_intermediate=False)
    assert curve.fpr.size > 10_000
    keep = display_indices(curve.fpr, curve.tpr, max_points=500)
    assert keep[0] == 0 and keep[-1] == curve.fpr.size - 1
    assert keep.size <= 500
    assert np.all(np.diff(keep) > 0)
    thin = display_curve(curve, 500)
    assert (thin.fpr[0], thin.tpr[0]) == (0.0, 0.0) and (thin.fpr[-1], thin.tpr[-1]) == (1.0, 1.0)
    # Spread along the curve: no big jump between neighbouring drawn points.
    gaps = np.hypot(np.diff(thin.fpr), np.diff(thin.tpr))
    assert gaps.max() < 0.05


def test_display_indices_leave_short_curves_alone():
    x = np.linspace(0, 1, 50)
    assert np.array_equal(display_indices(x, x, max_points=100), np.arange(50))


def test_roc_figure_downsamples_for_display_but_labels_the_full_auc(scores):
    auc = scores.auc()
    fig = roc_figure([RocSeries("urgent referral vs rest", scores.curve(drop_intermediate=False), auc)],
                     [PointMarker.on_roc("operating point", scores.at_threshold(0.5))], max_points=300)
    names = [t.name for t in fig.data]
    assert len(fig.data) == 3  # chance line, curve, operating point
    curve = fig.data[1]
    assert len(curve.x) <= 300 and curve.x[0] == 0 and curve.x[-1] == 1
    assert f"AUC {auc.value:.3f}" in names[1] and f"{auc.low:.3f}-{auc.high:.3f}" in names[1]
    assert "DeLong" in names[1]
    point = scores.at_threshold(0.5)
    assert fig.data[2].x[0] == pytest.approx(1 - point.specificity)
    assert fig.data[2].y[0] == pytest.approx(point.sensitivity)
    assert fig.layout.xaxis.title.text.startswith("1 - specificity")


def test_roc_curves_take_the_class_colours():
    task = get_task("oct-kermany")
    colours = class_colors(task.classes)
    rng = np.random.default_rng(1)
    series = []
    for cls in task.classes:
        truth = rng.random(200) < 0.4
        s = BinaryScores(truth, rng.normal(size=200) + truth)
        series.append(RocSeries(f"{cls} vs rest", s.curve(), s.auc(), colours[cls]))
    fig = roc_figure(series)
    assert [t.line.color for t in fig.data[1:]] == [colours[c] for c in task.classes]


def test_auc_label_says_why_an_auc_is_missing():
    empty = BinaryScores([1, 1, 1], [0.2, 0.4, 0.9]).auc()
    assert "n/a" in auc_label("CNV vs rest", empty) and "no negative" in auc_label("CNV vs rest", empty)


def test_pr_figure_shows_average_precision_and_chance(scores):
    pr = precision_recall(scores)
    fig = pr_figure([PrSeries("view", pr.recall, pr.precision, pr.average_precision, pr.prevalence)],
                    [PointMarker.on_pr("operating point", scores.at_threshold(0.5).metrics())], max_points=400)
    assert len(fig.data) == 3  # curve, chance line, point
    assert f"{pr.average_precision:.3f}" in fig.data[0].name
    assert len(fig.data[0].x) <= 400
    assert fig.data[1].y[0] == pytest.approx(scores.n_positive / len(scores))


def test_confusion_figure_colours_by_row_share_and_shows_counts():
    counts = np.array([[90, 10], [1, 9]])
    confusion = ConfusionMatrix(("NORMAL", "PNEUMONIA"), counts)
    fig = confusion_figure(confusion)
    heat = fig.data[0]
    assert np.allclose(heat.z, [[0.9, 0.1], [0.1, 0.9]])  # rows sum to 1: the rare class is as visible
    assert "90" in heat.text[0][0] and "90%" in heat.text[0][0]
    cells = fig.data[1]
    assert cells.name == CELL_TRACE_NAME and len(cells.x) == 4
    assert [list(c) for c in cells.customdata] == [[0, 0, 90], [0, 1, 10], [1, 0, 1], [1, 1, 9]]
    by_count = confusion_figure(confusion, colour_by="count", clickable=False)
    assert len(by_count.data) == 1 and np.allclose(by_count.data[0].z, counts)
    by_column = confusion_figure(confusion, colour_by="column")
    assert np.allclose(by_column.data[0].z, counts / counts.sum(axis=0))
    with pytest.raises(InputError):
        confusion_figure(confusion, colour_by="rainbow")
    assert len(confusion_figure(confusion, selected=(0, 1)).layout.shapes) == 1


def test_count_change_figure_is_centred_on_zero():
    fig = count_change_figure(np.array([[2, -2], [-5, 5]]), ["A", "B"])
    assert fig.data[0].zmin == -5 and fig.data[0].zmax == 5
    assert fig.data[0].text[1][0] == "-5"


def test_reliability_figure_skips_empty_bins():
    bins = reliability_bins(np.array([0.05, 0.1, 0.95, 0.9]), np.array([0, 0, 1, 1]), n_bins=10)
    fig = reliability_figure([ReliabilitySeries("score", bins)])
    assert len(fig.data) == 3  # diagonal, line, bars
    assert len(fig.data[1].x) == int((bins.counts > 0).sum())
    assert fig.data[2].xaxis == "x2"
    assert "ECE" in fig.data[1].name


def test_class_distribution_figure_keeps_class_colours_for_both_splits():
    task = get_task("cxr-kermany")
    table = class_distribution(task.classes, {"train": {"NORMAL": 1349, "BACTERIAL": 2538, "VIRAL": 1345},
                                              "test": {"NORMAL": 234, "BACTERIAL": 242, "VIRAL": 148}})
    fig = class_distribution_figure(table, task.classes)
    assert [t.name for t in fig.data] == ["train", "test"]
    colours = [class_colors(task.classes)[c] for c in task.classes]
    assert all(list(t.marker.color) == colours for t in fig.data)
    assert fig.data[0].marker.pattern.shape != fig.data[1].marker.pattern.shape
    assert fig.data[1].y[0] == pytest.approx(234 / 624)


def test_predictive_values_figure_marks_prevalences_on_a_log_axis():
    metrics = diagnostic_metrics(90, 20, 10, 180)
    curve = predictive_value_curve(metrics, np.logspace(-3, -0.01, 30))
    fig = predictive_values_figure(curve, prevalence=0.05, test_prevalence=1 / 3)
    assert fig.layout.xaxis.type == "log"
    names = [t.name for t in fig.data]
    assert any(n.startswith("chosen prevalence") for n in names)
    assert any(n.startswith("test-set prevalence") for n in names)


def test_compare_and_learning_curve_figures():
    rng = np.random.default_rng(2)
    truth = rng.random(300) < 0.5
    curves = {}
    for name, shift in (("full", 1.5), ("limited", 0.5)):
        s = BinaryScores(truth, rng.normal(size=300) + shift * truth)
        curves[name] = (s.curve(), s.auc())
    fig = compare_roc_figure(curves)
    colours = series_colors(curves)
    assert [t.line.color for t in fig.data[1:]] == [colours["full"], colours["limited"]]
    assert fig.data[1].line.dash != fig.data[2].line.dash or fig.data[1].line.color != fig.data[2].line.color
    table = pd.DataFrame({"run": ["a", "b"], "training_images": [400, 4000], "accuracy": [0.7, 0.9],
                          "accuracy_low": [0.6, 0.85], "accuracy_high": [0.8, 0.95]})
    lc = learning_curve_figure(table, "accuracy", "Accuracy")
    assert lc.layout.xaxis.type == "log" and list(lc.data[0].error_y.array) == pytest.approx([0.1, 0.05])
    bars = metric_bars_figure(table.rename(columns={"run": "name"}), "accuracy", "Accuracy")
    assert list(bars.data[0].error_x.arrayminus) == pytest.approx([0.1, 0.05])


def test_user_names_are_escaped_not_rendered_as_markup():
    assert safe_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    confusion = ConfusionMatrix(("<img src=x>", "B"), np.array([[1, 0], [0, 1]]))
    fig = confusion_figure(confusion)
    assert "<img" not in str(fig.data[0].x) and "&lt;img" in fig.data[0].x[0]
    s = BinaryScores([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6])
    roc = roc_figure([RocSeries("run %{x} <script>", s.curve(), s.auc())])
    assert "<script>" not in roc.data[1].name
    assert "%{x} &lt;script&gt;" in roc.data[1].meta[0] and "run" not in roc.data[1].hovertemplate
