"""Figures and curves that do not depend on the operating point, built once per predictions file and reused.

A threshold move then only redraws what it changes (the marked point, the confusion matrix, PPV/NPV), which
keeps a rerun on 100,000 predictions well under a second. The view's ROC and precision-recall figures are cached
without their operating point; the page marks it on a copy (core.plots.with_markers), never rebuilding the curve.
Cached figures are shared by every session: treat them as read-only.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.tasks import BinaryView, Task
from core.metrics import ConfusionMatrix
from core.metrics.dashboard import class_distribution, label_counts, label_views
from core.plots import (PrSeries, ReliabilitySeries, RocSeries, class_colors, class_distribution_figure,
                        confusion_figure, display_curve, display_indices, pr_figure, reliability_figure, roc_figure)
from dashboard.common import PredictionsFile
from dashboard.evaluation import (cached_argmax_confusion, cached_precision_recall, cached_reliability,
                                  cached_view_scores, evaluation_inputs)


def _one_vs_rest(task: Task) -> list[BinaryView]:
    return [BinaryView(f"{c} vs rest", (c,), tuple(x for x in task.classes if x != c)) for c in task.classes]


@st.cache_resource(show_spinner=False, max_entries=32)
def view_roc_series(file: PredictionsFile, task: Task, view: BinaryView, color: str | None = None
                    ) -> RocSeries | None:
    """The view's ROC thinned for drawing, with its AUC (None when the view lacks positives or negatives)."""
    scores = cached_view_scores(file, task, view)
    if not (scores.n_positive and scores.n_negative):
        return None
    return RocSeries(view.name, display_curve(scores.curve()), scores.auc(), color)


@st.cache_resource(show_spinner=False, max_entries=32)
def view_pr_series(file: PredictionsFile, task: Task, view: BinaryView, color: str | None = None
                   ) -> PrSeries | None:
    """The view's precision-recall curve thinned for drawing, with its average precision."""
    pr = cached_precision_recall(file, task, view)
    if pr is None:
        return None
    keep = display_indices(pr.recall, pr.precision)
    return PrSeries(view.name, pr.recall[keep], pr.precision[keep], pr.average_precision, pr.prevalence, color)


@st.cache_resource(show_spinner=False, max_entries=8)
def class_figures(file: PredictionsFile, task: Task) -> tuple[go.Figure, go.Figure]:
    """(ROC, precision-recall) one-vs-rest per class (per label for multi-label tasks), in the class colours."""
    colors = class_colors(task.classes)
    views = label_views(task) if task.kind == "multilabel" else _one_vs_rest(task)
    rocs, prs = [], []
    for cls, view in zip(task.classes, views):
        roc = view_roc_series(file, task, view, colors[cls])
        pr = view_pr_series(file, task, view, colors[cls])
        rocs += [roc] if roc else []
        prs += [pr] if pr else []
    what = "per label" if task.kind == "multilabel" else "one-vs-rest per class"
    return (roc_figure(rocs, title=f"ROC, {what}"),
            pr_figure(prs, title=f"Precision-recall, {what} (dotted: chance = prevalence)"))


@st.cache_resource(show_spinner=False, max_entries=16)
def reliability_view_figure(file: PredictionsFile, task: Task, view: BinaryView) -> go.Figure:
    """Reliability of the model's top-label confidence and of the view's score, 10 equal-width bins."""
    top = cached_reliability(file, task, None, 10)
    view_bins = cached_reliability(file, task, view, 10)
    return reliability_figure([ReliabilitySeries("top-label confidence", top, "#0072B2"),
                               ReliabilitySeries(f"{view.name} score", view_bins, "#E69F00")],
                              title="Reliability diagram")


ARGMAX_TITLE = "Most probable class (argmax)"


@st.cache_resource(show_spinner=False, max_entries=8)
def argmax_confusion_figure(file: PredictionsFile, task: Task) -> go.Figure:
    """The Penalties page's argmax confusion matrix: no penalty edit moves it, so drawn once per predictions file."""
    return confusion_figure(ConfusionMatrix(tuple(task.classes), cached_argmax_confusion(file, task)), clickable=False,
                            title=ARGMAX_TITLE)


# The view's curves as the Performance page draws them, without the operating point (added per threshold).
VIEW_COLOR = "#000000"


@st.cache_resource(show_spinner=False, max_entries=64)
def view_curve_figure(file: PredictionsFile, task: Task, view: BinaryView, kind: str) -> go.Figure | None:
    """The view's ROC (kind "roc") or precision-recall (kind "pr") figure, unmarked (None when the view lacks
    positives or negatives)."""
    if kind == "roc":
        series = view_roc_series(file, task, view, VIEW_COLOR)
        return None if series is None else roc_figure(
            [series], title=f"{view.name} (positive: {', '.join(view.positive)})")
    series = view_pr_series(file, task, view, VIEW_COLOR)
    return None if series is None else pr_figure([series], title=f"{view.name} (dotted: chance = prevalence)")


@st.cache_resource(show_spinner=False, max_entries=16)
def class_distribution_view(file: PredictionsFile, task: Task, train_counts: tuple[tuple[str, int], ...] | None
                            ) -> tuple[pd.DataFrame, go.Figure]:
    """(table, figure) of the class distribution, training (when known) vs this test set."""
    classes = list(task.classes)
    test_counts = label_counts(evaluation_inputs(file, task).truth, classes)
    splits = {"train": dict(train_counts), "test": test_counts} if train_counts else {"test": test_counts}
    distribution = class_distribution(classes, splits)
    return distribution, class_distribution_figure(distribution, classes,
                                                   title="Class distribution: training vs test")
