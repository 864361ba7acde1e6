"""Referral levels and binary views: collapse class probabilities into one score and tiers into one matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.tasks import REFERRAL_LEVELS, BinaryView, Task
from core.errors import InputError
from core.metrics.multiclass import ConfusionMatrix
from core.metrics.penalties import confusion_counts


def referral_score(probabilities, classes, urgent_classes) -> np.ndarray:
    """Probability of needing urgent referral: the sum of the urgent classes' probabilities."""
    probs = np.asarray(probabilities, dtype=float)
    classes = [str(c) for c in classes]
    missing = [c for c in urgent_classes if c not in classes]
    if missing:
        raise InputError(f"urgent classes {missing} are not classes of this task {classes}")
    if not urgent_classes:
        raise InputError("this task names no urgent classes, so there is no urgent-referral score")
    return probs[:, [classes.index(c) for c in urgent_classes]].sum(axis=1)


@dataclass(frozen=True)
class BinaryViewData:
    """The cases a binary view covers, their truth (1 = positive group) and their score."""

    view: BinaryView
    rows: np.ndarray  # indices into the original table
    truth: np.ndarray
    scores: np.ndarray
    calls: np.ndarray | None = None  # model's positive/negative call, when predicted classes are given


def binary_view_data(y_true, probabilities, classes, view: BinaryView, y_pred=None) -> BinaryViewData:
    """Restrict to cases whose true class is in the view, score = P(positive group | one of the view's classes).

    For a view covering every class (urgent vs rest) this is the plain sum of the positive classes'
    probabilities; for a narrower one (CNV vs NORMAL) the pair is renormalised so the score stays a
    probability of the two-way question. Calls (if y_pred given) are positive when the predicted class
    is in the positive group.
    """
    probs = np.asarray(probabilities, dtype=float)
    classes = [str(c) for c in classes]
    truth = np.asarray(y_true, dtype=np.int64)
    pos = [classes.index(c) for c in view.positive]
    neg = [classes.index(c) for c in view.negative]
    rows = np.flatnonzero(np.isin(truth, pos + neg))
    p_pos = probs[rows][:, pos].sum(axis=1)
    p_neg = probs[rows][:, neg].sum(axis=1)
    covered = p_pos + p_neg
    if len(pos) + len(neg) == len(classes):
        scores = p_pos
    else:
        # 0/0 happens when the model puts all mass outside the view; call that an even split.
        scores = np.divide(p_pos, covered, out=np.full_like(p_pos, 0.5), where=covered > 0)
    calls = None
    if y_pred is not None:
        calls = np.isin(np.asarray(y_pred, dtype=np.int64)[rows], pos)
    return BinaryViewData(view, rows, np.isin(truth[rows], pos), scores, calls)


def referral_tiers(task: Task) -> tuple[str, ...]:
    """The referral levels this task uses, most urgent first."""
    levels = task.referral_levels
    return tuple(level for level in REFERRAL_LEVELS if level in levels.values())


def tier_confusion(y_true, y_pred, task: Task) -> ConfusionMatrix:
    """Confusion between referral tiers (rows = true tier, columns = tier of the call).

    Classes without a referral level form a tier of their own named "unassigned".
    """
    levels = task.referral_levels
    tiers = list(referral_tiers(task))
    if any(c not in levels for c in task.classes):
        tiers.append("unassigned")
    if not tiers:
        raise InputError(f"task {task.name!r} defines no referral levels")
    class_to_tier = np.array([tiers.index(levels.get(c, "unassigned")) for c in task.classes], dtype=np.int64)
    truth = class_to_tier[np.asarray(y_true, dtype=np.int64)]
    pred = class_to_tier[np.asarray(y_pred, dtype=np.int64)]
    return ConfusionMatrix(tuple(tiers), confusion_counts(truth, pred, len(tiers)))
