"""Figures and curves that do not depend on the operating point, built once per predictions file and reused.

A threshold move then only redraws what it changes (the marked point, the confusion matrix, PPV/NPV), which
keeps a rerun on 100,000 predictions well under a second.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.data.tasks import BinaryView, Task
from core.plots import (PrSeries, ReliabilitySeries, RocSeries, class_colors, display_curve, display_indices,
                        pr_figure, reliability_figure, roc_figure)
from dashboard.evaluation import (file_version, precision_recall_cached, reliability_cached, scores_cached,
                                  task_from_json, task_key, view_key)


def _one_vs_rest(task: Task) -> list[BinaryView]:
    return [BinaryView(f"{c} vs rest", (c,), tuple(x for x in task.classes if x != c)) for c in task.classes]


def _label_views(task: Task) -> list[BinaryView]:
    return [BinaryView(c, (c,), ()) for c in task.classes]


@st.cache_resource(show_spinner=False, max_entries=32)
def _roc_series(path: str, mtime: float, task_json: str, vkey: tuple, color: str | None) -> RocSeries | None:
    scores = scores_cached(path, mtime, task_json, vkey)
    if not (scores.n_positive and scores.n_negative):
        return None
    return RocSeries(vkey[0], display_curve(scores.curve()), scores.auc(), color)


def view_roc_series(path: str, task: Task, view: BinaryView, color: str | None = None) -> RocSeries | None:
    """The view's ROC thinned for drawing, with its AUC (None when the view lacks positives or negatives)."""
    return _roc_series(str(path), file_version(path), task_key(task), view_key(view), color)


@st.cache_resource(show_spinner=False, max_entries=32)
def _pr_series(path: str, mtime: float, task_json: str, vkey: tuple, color: str | None) -> PrSeries | None:
    pr = precision_recall_cached(path, mtime, task_json, vkey)
    if pr is None:
        return None
    keep = display_indices(pr.recall, pr.precision)
    return PrSeries(vkey[0], pr.recall[keep], pr.precision[keep], pr.average_precision, pr.prevalence, color)


def view_pr_series(path: str, task: Task, view: BinaryView, color: str | None = None) -> PrSeries | None:
    """The view's precision-recall curve thinned for drawing, with its average precision."""
    return _pr_series(str(path), file_version(path), task_key(task), view_key(view), color)


@st.cache_resource(show_spinner=False, max_entries=8)
def _class_figures(path: str, mtime: float, task_json: str) -> tuple[go.Figure, go.Figure]:
    task = task_from_json(task_json)
    colors = class_colors(task.classes)
    views = _label_views(task) if task.kind == "multilabel" else _one_vs_rest(task)
    rocs, prs = [], []
    for cls, view in zip(task.classes, views):
        roc = _roc_series(path, mtime, task_json, view_key(view), colors[cls])
        pr = _pr_series(path, mtime, task_json, view_key(view), colors[cls])
        rocs += [roc] if roc else []
        prs += [pr] if pr else []
    what = "per label" if task.kind == "multilabel" else "one-vs-rest per class"
    return (roc_figure(rocs, title=f"ROC, {what}"),
            pr_figure(prs, title=f"Precision-recall, {what} (dotted: chance = prevalence)"))


def class_figures(path: str, task: Task) -> tuple[go.Figure, go.Figure]:
    """(ROC, precision-recall) one-vs-rest per class (per label for multi-label tasks), in the class colours."""
    return _class_figures(str(path), file_version(path), task_key(task))


@st.cache_resource(show_spinner=False, max_entries=16)
def _reliability_figure(path: str, mtime: float, task_json: str, vkey: tuple) -> go.Figure:
    top = reliability_cached(path, mtime, task_json, None, 10)
    view_bins = reliability_cached(path, mtime, task_json, vkey, 10)
    return reliability_figure([ReliabilitySeries("top-label confidence", top, "#0072B2"),
                               ReliabilitySeries(f"{vkey[0]} score", view_bins, "#E69F00")],
                              title="Reliability diagram")


def reliability_view_figure(path: str, task: Task, view: BinaryView) -> go.Figure:
    """Reliability of the model's top-label confidence and of the view's score, 10 equal-width bins."""
    return _reliability_figure(str(path), file_version(path), task_key(task), view_key(view))
