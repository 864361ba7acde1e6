"""The headline statistics of a model on a test set, one function and one interval method each.

The Performance page and the exported report both call these, so the same number carries the same interval,
and each interval names its method (Interval.method), which both show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.data.tasks import Task
from core.metrics.intervals import Interval, proportion_ci
from core.metrics.multiclass import macro_and_weighted_auc
from core.metrics.operating import BinaryScores, OperatingPoint
from core.metrics.bootstrap import percentile_interval, resample_weights
from core.metrics.penalties import check_penalty_matrix, image_penalties
from core.metrics.referral import referral_score
from core.metrics.roc import AucEstimate, roc_auc
from core.metrics.uncertainty import bootstrap_macro_auc, bootstrap_multiclass

# Resamples and seed of the bootstrap intervals when the caller does not choose (the Performance page; the report's
# default): patients are resampled, so the intervals are those of the report exported with the same settings.
HEADLINE_RESAMPLES = 200
HEADLINE_SEED = 0
BOOTSTRAP_METHOD = "bootstrap percentile"


@dataclass(frozen=True)
class Headline:
    """One headline number: a key, a label, its interval (value, low, high, method, reason) and a note."""

    key: str
    label: str
    interval: Interval
    kind: str  # "proportion" | "number" | "auc"
    note: str = ""


def accuracy(truth, calls, confidence: float = 0.95) -> Interval:
    """Share of images whose class call is right; Wilson score interval."""
    truth = np.asarray(truth, dtype=np.int64)
    correct = int(np.count_nonzero(truth == np.asarray(calls, dtype=np.int64)))
    return proportion_ci(correct, int(truth.size), "wilson", confidence)


def weighted_error(truth, probabilities, calls, penalty, patient_ids=None, n_resamples: int = HEADLINE_RESAMPLES,
                   seed: int = HEADLINE_SEED, confidence: float = 0.95, *, referred=None,
                   referral_cost=None) -> Interval:
    """Mean penalty per image of these calls under the penalty matrix (rows = true, columns = called); a referred
    image (`referred` mask) costs its true class's `referral_cost` instead (default: core.metrics.penalties'
    default_referral_cost). Percentile bootstrap interval resampling patients (images without a patient id stand
    alone), seeded, the same resamples with or without referrals. n_resamples=0: the value without an interval."""
    truth = np.asarray(truth, dtype=np.int64)
    calls = np.asarray(calls, dtype=np.int64)
    matrix = check_penalty_matrix(penalty, np.asarray(probabilities).shape[1])
    per_image = image_penalties(truth, calls, matrix, referred, referral_cost)
    value = float(per_image.mean()) if truth.size else math.nan
    if int(n_resamples) == 0:
        return Interval(value, math.nan, math.nan, BOOTSTRAP_METHOD, n=int(truth.size), confidence=confidence,
                        reason="no interval: bootstrap resamples set to 0")
    if referred is not None and np.asarray(referred, dtype=bool).any():
        replicates = np.concatenate([weights @ per_image / weights.sum(axis=1) for weights in
                                     resample_weights(truth.size, patient_ids, int(n_resamples), int(seed))])
        unit = "patients" if patient_ids is not None else "images"
        return percentile_interval(value, replicates, confidence, int(truth.size), f"by {unit}")
    boot = bootstrap_multiclass(truth, probabilities, y_pred=calls, penalty=matrix, patient_ids=patient_ids,
                                n_resamples=int(n_resamples), confidence=confidence, seed=int(seed),
                                aucs=False)["weighted_error"]
    return Interval(value, boot.low, boot.high, boot.method, n=boot.n, confidence=boot.confidence, reason=boot.reason)


def urgent_auc(truth, probabilities, task: Task, confidence: float = 0.95) -> AucEstimate | None:
    """AUC of the urgent-referral score (summed probability of the urgent classes) for urgent vs every other
    class; DeLong interval. None when the task names no urgent classes (or only urgent ones)."""
    urgent = task.urgent_classes()
    if not urgent or len(urgent) == task.num_classes:
        return None
    positive = np.isin(np.asarray(truth, dtype=np.int64), [task.class_index(c) for c in urgent])
    return BinaryScores(positive, referral_score(probabilities, task.classes, urgent)).auc(confidence)


def macro_auc(truth, probabilities, patient_ids=None, n_resamples: int = HEADLINE_RESAMPLES,
              seed: int = HEADLINE_SEED, confidence: float = 0.95) -> Interval:
    """Mean one-vs-rest AUC over the classes that have one; percentile bootstrap interval resampling patients,
    seeded. n_resamples=0: the value without an interval."""
    truth = np.asarray(truth, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=float)
    aucs = [roc_auc(truth == j, probs[:, j], confidence) for j in range(probs.shape[1])]
    value, _ = macro_and_weighted_auc(aucs, [a.n_positive for a in aucs])
    if int(n_resamples) == 0:
        return Interval(value, math.nan, math.nan, BOOTSTRAP_METHOD, n=int(truth.size), confidence=confidence,
                        reason="no interval: bootstrap resamples set to 0")
    boot = bootstrap_multiclass(truth, probs, patient_ids=patient_ids, n_resamples=int(n_resamples),
                                confidence=confidence, seed=int(seed))["macro_auc"]
    return Interval(value, boot.low, boot.high, boot.method, n=boot.n, confidence=boot.confidence, reason=boot.reason)


def label_macro_auc(truth_matrix, probabilities, patient_ids=None, n_resamples: int = HEADLINE_RESAMPLES,
                    seed: int = HEADLINE_SEED, confidence: float = 0.95) -> Interval:
    """Multi-label tasks: mean AUROC over the labels; percentile bootstrap interval resampling patients, seeded."""
    return bootstrap_macro_auc(truth_matrix, probabilities, patient_ids, max(int(n_resamples), 1), confidence,
                               int(seed))


def headline_statistics(task: Task, truth, probabilities, calls, penalty, *, point: OperatingPoint | None = None,
                        view_name: str = "", patient_ids=None, n_resamples: int = HEADLINE_RESAMPLES,
                        seed: int = HEADLINE_SEED, confidence: float = 0.95, calls_note: str = "",
                        penalty_name: str = "", referred=None, referral_cost=None) -> list[Headline]:
    """Accuracy, sensitivity and specificity at the operating point of the headline binary view, weighted error,
    and the urgent-referral AUC (else the macro AUC), for a single-label task. With a `referred` mask (cases the
    model referred to a reader): the share referred and the accuracy among the calls made too, and the weighted
    error prices each referral at `referral_cost` of its true class."""
    items = [Headline("accuracy", "Accuracy", accuracy(truth, calls, confidence), "proportion", calls_note)]
    if referred is not None:
        referred = np.asarray(referred, dtype=bool)
        truth_arr, calls_arr = np.asarray(truth, dtype=np.int64), np.asarray(calls, dtype=np.int64)
        items += [Headline("referred", "Referred to a reader",
                           proportion_ci(int(referred.sum()), int(referred.size), "wilson", confidence), "proportion",
                           "share of images the model left to a reader (score in its referral band)"),
                  Headline("accuracy_among_calls", "Accuracy among calls made",
                           accuracy(truth_arr[~referred], calls_arr[~referred], confidence), "proportion",
                           "share right among the images not referred")]
    if point is not None:
        rates = point.metrics(confidence=confidence)
        note = f"{view_name}: positive when the score is at least {point.threshold:g}"
        items += [Headline("sensitivity", "Sensitivity", rates.sensitivity, "proportion", note),
                  Headline("specificity", "Specificity", rates.specificity, "proportion", note)]
    items.append(Headline("weighted_error", "Weighted error",
                          weighted_error(truth, probabilities, calls, penalty, patient_ids, n_resamples, seed,
                                         confidence, referred=referred, referral_cost=referral_cost), "number",
                          (f"mean penalty per image, penalty matrix: {penalty_name}" if penalty_name else
                           "mean penalty per image") + (", a referral priced per true class"
                                                        if referred is not None else "")))
    urgent = urgent_auc(truth, probabilities, task, confidence)
    if urgent is not None:
        items.append(Headline("urgent_auc", "Urgent-referral AUC", urgent, "auc",
                              f"{', '.join(task.urgent_classes())} vs the rest"))
    else:
        items.append(Headline("macro_auc", "Macro AUC (one-vs-rest)",
                              macro_auc(truth, probabilities, patient_ids, n_resamples, seed, confidence), "auc",
                              "mean of the per-class AUCs"))
    return items
