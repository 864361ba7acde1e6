"""What the evaluation pages need per rerun: arrays parsed once, threshold-driven calls, and the pages' tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from core.data.tasks import BinaryView, Task
from core.errors import InputError
from core.metrics.diagnostic import DiagnosticMetrics, diagnostic_metrics
from core.metrics import headline
from core.metrics.imbalance import predictive_values_at_prevalence
from core.metrics.intervals import Interval, check_confidence, normal_quantile
from core.metrics.multiclass import ConfusionMatrix, balanced_accuracy
from core.metrics.operating import BinaryScores
from core.metrics.penalties import check_penalty_matrix, confusion_counts
from core.metrics.roc import AucEstimate, roc_auc

MEAN_INTERVAL_METHOD = "normal approximation"


@dataclass(frozen=True)
class EvaluationArrays:
    """A predictions table as arrays, parsed once per file (core.infer.predictions.evaluation_arrays): every later
    page rerun only indexes these."""

    task: Task
    image_ids: np.ndarray        # str per image
    truth: np.ndarray            # class index per image; (n, k) 0/1 matrix for multi-label tasks
    probabilities: np.ndarray    # (n, k) in task.classes order
    model_calls: np.ndarray | None  # class index of the stored 'predicted' column (single-label tasks)
    patient_codes: np.ndarray | None  # group code per image (None: no patient ids, images stand alone)
    patient_ids: np.ndarray | None
    n_patients: int | None = None

    @property
    def n(self) -> int:
        return int(self.image_ids.size)


# -- binary views -------------------------------------------------------------------------------------------
def covers_all_classes(view: BinaryView, task: Task) -> bool:
    """True when every class is on one side of the view (then a threshold on it can decide every case)."""
    return set(view.positive) | set(view.negative) == set(task.classes)


def available_views(task: Task) -> tuple[BinaryView, ...]:
    """The task's declared binary views, then one-vs-rest for each class (skipping repeats of a declared view)."""
    views = list(task.binary_views)
    seen = {(frozenset(v.positive), frozenset(v.negative)) for v in views}
    for cls in task.classes:
        rest = tuple(c for c in task.classes if c != cls)
        key = (frozenset((cls,)), frozenset(rest))
        if key not in seen and rest:
            views.append(BinaryView(f"{cls} vs rest", (cls,), rest))
            seen.add(key)
    return tuple(views)


def urgent_view(task: Task) -> BinaryView | None:
    """The urgent-referral view (urgent classes vs all others), if the task names urgent classes."""
    urgent = task.urgent_classes()
    rest = tuple(c for c in task.classes if c not in urgent)
    if not urgent or not rest:
        return None
    for view in task.binary_views:
        if set(view.positive) == set(urgent) and set(view.negative) == set(rest):
            return view
    return BinaryView("urgent referral vs rest", urgent, rest)


def calls_at_threshold(probabilities, classes: Sequence[str], view: BinaryView, threshold: float) -> np.ndarray:
    """Class calls when a threshold on the view's score decides the side first.

    A case whose summed probability of the positive classes is >= threshold gets the most probable
    positive class, otherwise the most probable negative class. The counts of this rule collapsed to the
    view are exactly BinaryScores.at_threshold(threshold) on the same score.
    """
    probs = np.asarray(probabilities, dtype=float)
    classes = [str(c) for c in classes]
    if set(view.positive) | set(view.negative) != set(classes):
        raise InputError(f"binary view {view.name!r} leaves some classes out, so it cannot decide every case")
    pos = np.array([classes.index(c) for c in view.positive])
    neg = np.array([classes.index(c) for c in view.negative])
    score = probs[:, pos].sum(axis=1)
    best_pos = pos[probs[:, pos].argmax(axis=1)]
    best_neg = neg[probs[:, neg].argmax(axis=1)]
    return np.where(score >= float(threshold), best_pos, best_neg)


def view_scores(arrays: EvaluationArrays, view: BinaryView) -> BinaryScores:
    """The sorted scores of one view (build once per file and view; threshold moves are then O(log n)).

    For a multi-label task the view names one label (`view.positive == (label,)`): its own probability
    against its own 0/1 truth.
    """
    from core.metrics.referral import binary_view_data

    if arrays.task.kind == "multilabel":
        j = arrays.task.class_index(view.positive[0])
        return BinaryScores(arrays.truth[:, j], arrays.probabilities[:, j])
    data = binary_view_data(arrays.truth, arrays.probabilities, arrays.task.classes, view)
    return BinaryScores(data.truth, data.scores)


def label_views(task: Task) -> tuple[BinaryView, ...]:
    """One view per label of a multi-label task (the label present vs absent)."""
    return tuple(BinaryView(c, (c,), ()) for c in task.classes)


# -- summaries of one set of calls --------------------------------------------------------------------------
def mean_interval(values, clusters=None, confidence: float = 0.95, lower: float | None = None) -> Interval:
    """Mean with a normal-approximation interval; with cluster codes (patients) the variance is cluster-robust.

    An O(n) alternative to resampling; the headline weighted error does not use it (core.metrics.headline
    bootstraps patients, as the exported report does). `lower` clips the interval (0 for penalties).
    """
    level = check_confidence(confidence)
    v = np.asarray(values, dtype=float)
    n = v.size
    unit = "by patient" if clusters is not None else "by image"
    method = f"{MEAN_INTERVAL_METHOD} ({unit})"
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, method, n=0, confidence=level, reason="no cases (n = 0)")
    mean = float(v.mean())
    if clusters is None:
        variance = float(v.var(ddof=1)) / n if n > 1 else 0.0
    else:
        codes = np.asarray(clusters, dtype=np.int64)
        totals = np.bincount(codes, weights=v - mean)
        groups = int(np.count_nonzero(np.bincount(codes)))
        # Liang-Zeger sandwich for a mean, with the usual G / (G - 1) small-sample factor.
        variance = float((totals ** 2).sum()) / n ** 2 * (groups / (groups - 1)) if groups > 1 else 0.0
    half = normal_quantile(level) * math.sqrt(max(variance, 0.0))
    low, high = mean - half, mean + half
    if lower is not None:
        low = max(low, lower)
    return Interval(mean, low, high, method, n=n, confidence=level)


@dataclass(frozen=True)
class CallSummary:
    """One set of class calls on the test set: confusion, accuracy, balanced accuracy, weighted error."""

    confusion: ConfusionMatrix
    accuracy: Interval
    balanced_accuracy: float
    weighted_error: Interval


def call_summary(truth, calls, classes: Sequence[str], penalty, patient_codes=None, confidence: float = 0.95, *,
                 probabilities) -> CallSummary:
    """Confusion, accuracy and weighted error of these calls, with the headline statistics' interval methods
    (core.metrics.headline: Wilson; patient bootstrap)."""
    classes = tuple(str(c) for c in classes)
    k = len(classes)
    matrix = check_penalty_matrix(penalty, k)
    truth = np.asarray(truth, dtype=np.int64)
    calls = np.asarray(calls, dtype=np.int64)
    confusion = ConfusionMatrix(classes, confusion_counts(truth, calls, k))
    weighted = headline.weighted_error(truth, probabilities, calls, matrix, patient_codes, confidence=confidence)
    return CallSummary(confusion, headline.accuracy(truth, calls, confidence), balanced_accuracy(confusion),
                       weighted)


def class_aucs(arrays: EvaluationArrays, confidence: float = 0.95) -> tuple[AucEstimate, ...]:
    """One-vs-rest AUC with DeLong interval for each class (threshold-free: compute once per file)."""
    if arrays.task.kind == "multilabel":
        return tuple(roc_auc(arrays.truth[:, j], arrays.probabilities[:, j], confidence)
                     for j in range(arrays.task.num_classes))
    return tuple(roc_auc(arrays.truth == j, arrays.probabilities[:, j], confidence)
                 for j in range(arrays.task.num_classes))


def _interval_columns(prefix: str, interval: Interval) -> dict:
    return {prefix: interval.value, f"{prefix}_low": interval.low, f"{prefix}_high": interval.high}


def class_table(confusion: ConfusionMatrix, aucs: Sequence[AucEstimate] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
    """Per class (called vs any other class): support, sensitivity, specificity, PPV, NPV with intervals, AUC."""
    rows = []
    for index, name in enumerate(confusion.classes):
        rates = diagnostic_metrics(*confusion.one_vs_rest(index), confidence=confidence)
        row = {"class": name, "support": int(confusion.counts[index].sum()),
               "called": int(confusion.counts[:, index].sum())}
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            row.update(_interval_columns(key, getattr(rates, key)))
        if aucs is not None:
            row.update(_interval_columns("auc", aucs[index]))
        rows.append(row)
    return pd.DataFrame(rows)


def largest_error_cell(confusion: ConfusionMatrix) -> tuple[int, int]:
    """(true, called) indices of the most frequent mistake; the diagonal's largest cell when there is none."""
    counts = np.asarray(confusion.counts, dtype=float)
    off = counts.copy()
    np.fill_diagonal(off, -1.0)
    if off.max() > 0:
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        return int(i), int(j)
    i = int(np.argmax(np.diag(counts)))
    return i, i


def cases_in_cell(arrays: EvaluationArrays, calls, true_index: int, called_index: int,
                  limit: int | None = None) -> pd.DataFrame:
    """The cases of one confusion cell, the most confident calls first (those are the surprising mistakes)."""
    calls = np.asarray(calls, dtype=np.int64)
    rows = np.flatnonzero((arrays.truth == true_index) & (calls == called_index))
    p_called = arrays.probabilities[rows, called_index]
    rows = rows[np.argsort(-p_called, kind="stable")]
    if limit is not None:
        rows = rows[:limit]
    classes = arrays.task.classes
    return pd.DataFrame({
        "image_id": arrays.image_ids[rows],
        "patient_id": arrays.patient_ids[rows] if arrays.patient_ids is not None else None,
        "true_class": classes[true_index],
        "called_class": classes[called_index],
        "p_true_class": arrays.probabilities[rows, true_index],
        "p_called_class": arrays.probabilities[rows, called_index],
        "row": rows,
    })


# -- curves -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionRecall:
    """Precision-recall points (recall ascending), average precision and the chance level (prevalence)."""

    recall: np.ndarray
    precision: np.ndarray
    thresholds: np.ndarray
    average_precision: float
    prevalence: float


def precision_recall(scores: BinaryScores) -> PrecisionRecall:
    """PR curve from the cached ROC counts; AP = sum over thresholds of (recall step) x precision (as sklearn)."""
    curve = scores.curve(drop_intermediate=False)
    tps = np.rint(curve.tpr * scores.n_positive)
    fps = np.rint(curve.fpr * scores.n_negative)
    called = tps + fps
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, tps / np.where(called > 0, called, 1), 1.0)
    recall = curve.tpr
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    return PrecisionRecall(recall, precision, curve.thresholds, ap, scores.n_positive / len(scores))


def predictive_value_curve(metrics: DiagnosticMetrics, prevalences) -> pd.DataFrame:
    """PPV and NPV (with intervals) if the same sensitivity/specificity met each prevalence."""
    rows = []
    for p in np.asarray(prevalences, dtype=float):
        ppv, npv = predictive_values_at_prevalence(metrics, float(p))
        rows.append({"prevalence": float(p), **_interval_columns("ppv", ppv), **_interval_columns("npv", npv)})
    return pd.DataFrame(rows)


# -- class imbalance ----------------------------------------------------------------------------------------
def class_distribution(classes: Sequence[str], splits: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Long table (split, class, images, share) from per-split class counts, e.g. {'train': {...}, 'test': {...}}."""
    rows = []
    for split, counts in splits.items():
        total = float(sum(int(counts.get(c, 0)) for c in classes))
        for cls in classes:
            images = int(counts.get(cls, 0))
            rows.append({"split": split, "class": cls, "images": images,
                         "share": images / total if total else math.nan})
    return pd.DataFrame(rows, columns=["split", "class", "images", "share"])


def label_counts(truth: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    """Images per class from class indices (or per label from a 0/1 matrix)."""
    truth = np.asarray(truth)
    counts = truth.sum(axis=0) if truth.ndim == 2 else np.bincount(truth.astype(np.int64), minlength=len(classes))
    return {str(c): int(v) for c, v in zip(classes, counts)}


def class_balance_effect(train_counts: Mapping[str, int], balance: str) -> pd.DataFrame:
    """What a run's class balancing did to each class, from its training-image counts.

    balance='weights': cross-entropy weight n / (k x count) (scikit-learn's 'balanced', as the trainer uses),
    so each class carries an equal share of the loss. 'sampler': images drawn with replacement, each class
    equally likely, so each class is an equal share of the batches. 'none': each class counts as often as
    it occurs.
    """
    if balance not in ("none", "weights", "sampler"):
        raise InputError(f"class balancing must be none, weights or sampler, got {balance!r}")
    names = list(train_counts)
    counts = np.array([float(train_counts[c]) for c in names])
    total = counts.sum()
    present = counts > 0
    k = int(present.sum())
    share = counts / total if total else np.full(counts.shape, math.nan)
    weight = np.ones_like(counts)
    if balance == "weights" and k:
        weight[present] = total / (k * counts[present])
    influence = share.copy()
    if balance in ("weights", "sampler") and k:
        influence = np.where(present, 1.0 / k, 0.0)
    return pd.DataFrame({"class": names, "training_images": counts.astype(int), "share_of_images": share,
                         "loss_weight": weight, "share_of_training_signal": influence})


# -- multi-label --------------------------------------------------------------------------------------------
def multilabel_threshold_table(arrays: EvaluationArrays, threshold: float, aucs: Sequence[AucEstimate],
                               confidence: float = 0.95) -> pd.DataFrame:
    """Per label: prevalence, AUROC with DeLong interval, and sensitivity/specificity with p >= threshold."""
    truth = np.asarray(arrays.truth, dtype=bool)
    called = arrays.probabilities >= float(threshold)
    tp = (called & truth).sum(axis=0)
    fp = (called & ~truth).sum(axis=0)
    fn = (~called & truth).sum(axis=0)
    tn = (~called & ~truth).sum(axis=0)
    rows = []
    for j, name in enumerate(arrays.task.classes):
        rates = diagnostic_metrics(int(tp[j]), int(fp[j]), int(fn[j]), int(tn[j]), confidence=confidence)
        rows.append({"label": name, "positives": int(truth[:, j].sum()),
                     "prevalence": float(truth[:, j].mean()) if truth.shape[0] else math.nan,
                     **_interval_columns("auc", aucs[j]), **_interval_columns("sensitivity", rates.sensitivity),
                     **_interval_columns("specificity", rates.specificity)})
    return pd.DataFrame(rows)
