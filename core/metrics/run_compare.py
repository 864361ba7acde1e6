"""Several runs on one test set: align predictions, summarise each, test pairs (DeLong, McNemar), learning curve."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from core.data.tasks import BinaryView, Task
from core.errors import InputError
from core.metrics.calibration import brier_score, expected_calibration_error
from core.metrics.comparisons import compare_correctness
from core.metrics.dashboard import EvaluationArrays, call_summary
from core.metrics.multiclass import macro_and_weighted_auc
from core.metrics.operating import BinaryScores
from core.metrics.referral import binary_view_data
from core.metrics.roc import delong_test, roc_auc


@dataclass(frozen=True)
class AlignedRuns:
    """Predictions of several runs restricted to the images they all scored, in one image order."""

    task: Task
    image_ids: np.ndarray
    truth: np.ndarray
    probabilities: dict[str, np.ndarray]
    calls: dict[str, np.ndarray]
    patient_codes: np.ndarray | None
    dropped: dict[str, int]  # images of each run left out because another run lacks them

    @property
    def names(self) -> list[str]:
        return list(self.probabilities)


def align_runs(runs: Mapping[str, EvaluationArrays]) -> AlignedRuns:
    """Keep the images every run scored; InputError if the runs disagree on the task or on a true label."""
    if not runs:
        raise InputError("no runs to compare")
    names = list(runs)
    first = runs[names[0]]
    task = first.task
    if task.kind == "multilabel":
        raise InputError("comparing runs is available for single-label tasks")
    for name in names[1:]:
        if runs[name].task.classes != task.classes:
            raise InputError(f"run {name!r} has classes {list(runs[name].task.classes)}, not {list(task.classes)}: "
                             "runs can only be compared on the same classes")
    common = first.image_ids
    for name in names[1:]:
        common = np.intersect1d(common, runs[name].image_ids)
    if common.size == 0:
        raise InputError("the selected runs share no test images")
    common = np.asarray(common, dtype=object)
    probabilities, calls, dropped, truth = {}, {}, {}, None
    for name in names:
        arrays = runs[name]
        index = pd.Index(arrays.image_ids)
        if not index.is_unique:
            raise InputError(f"run {name!r}: image ids repeat in its predictions table")
        order = index.get_indexer(common)
        run_truth = arrays.truth[order]
        if truth is None:
            truth = run_truth
        elif not np.array_equal(truth, run_truth):
            bad = int(np.count_nonzero(truth != run_truth))
            raise InputError(f"run {name!r} gives {bad} shared images a different true label: are these the same "
                             "test set?")
        probabilities[name] = arrays.probabilities[order]
        calls[name] = arrays.model_calls[order]
        dropped[name] = int(arrays.n - common.size)
    codes = first.patient_codes[pd.Index(first.image_ids).get_indexer(common)] \
        if first.patient_codes is not None else None
    return AlignedRuns(task, common, truth, probabilities, calls, codes, dropped)


def view_score_sets(aligned: AlignedRuns, view: BinaryView) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The view's truth on the shared cases and each run's score for it."""
    scores, truth = {}, None
    for name in aligned.names:
        data = binary_view_data(aligned.truth, aligned.probabilities[name], aligned.task.classes, view)
        truth = data.truth
        scores[name] = data.scores
    return truth, scores


def run_summary_table(aligned: AlignedRuns, view: BinaryView, penalty, confidence: float = 0.95) -> pd.DataFrame:
    """One row per run: accuracy, balanced accuracy, weighted error, macro AUC, the view's AUC, ECE, Brier."""
    view_truth, view_scores = view_score_sets(aligned, view)
    rows = []
    k = aligned.task.num_classes
    for name in aligned.names:
        probs = aligned.probabilities[name]
        summary = call_summary(aligned.truth, aligned.calls[name], aligned.task.classes, penalty,
                               aligned.patient_codes, confidence, probabilities=probs)
        aucs = [roc_auc(aligned.truth == j, probs[:, j], confidence) for j in range(k)]
        macro, _ = macro_and_weighted_auc(aucs, np.bincount(aligned.truth, minlength=k))
        view_auc = roc_auc(view_truth, view_scores[name], confidence)
        rows.append({
            "run": name, "images": int(aligned.truth.size),
            "accuracy": summary.accuracy.value, "accuracy_low": summary.accuracy.low,
            "accuracy_high": summary.accuracy.high, "balanced_accuracy": summary.balanced_accuracy,
            "weighted_error": summary.weighted_error.value, "weighted_error_low": summary.weighted_error.low,
            "weighted_error_high": summary.weighted_error.high, "macro_auc": macro,
            "view_auc": view_auc.value, "view_auc_low": view_auc.low, "view_auc_high": view_auc.high,
            "ece": expected_calibration_error(aligned.truth, probs), "brier": brier_score(aligned.truth, probs),
        })
    return pd.DataFrame(rows)


def pairwise_tests(aligned: AlignedRuns, view: BinaryView, confidence: float = 0.95) -> pd.DataFrame:
    """Every pair of runs: DeLong's test on the view's AUC and McNemar's exact test on correct class calls."""
    view_truth, view_scores = view_score_sets(aligned, view)
    rows = []
    for a, b in itertools.combinations(aligned.names, 2):
        delong = delong_test(view_truth, view_scores[a], view_scores[b], confidence)
        mcnemar = compare_correctness(aligned.truth, aligned.calls[a], aligned.calls[b])
        rows.append({
            "run_a": a, "run_b": b, "auc_a": delong.auc_a.value, "auc_b": delong.auc_b.value,
            "auc_difference": delong.difference.value, "auc_difference_low": delong.difference.low,
            "auc_difference_high": delong.difference.high, "delong_z": delong.z, "delong_p": delong.p_value,
            "only_a_right": mcnemar.b, "only_b_right": mcnemar.c, "mcnemar_p": mcnemar.p_value,
            "note": "; ".join(r for r in (delong.reason, mcnemar.reason) if r),
        })
    return pd.DataFrame(rows, columns=["run_a", "run_b", "auc_a", "auc_b", "auc_difference", "auc_difference_low",
                                       "auc_difference_high", "delong_z", "delong_p", "only_a_right",
                                       "only_b_right", "mcnemar_p", "note"])


def view_curves(aligned: AlignedRuns, view: BinaryView) -> dict[str, BinaryScores]:
    """Each run's sorted view scores on the shared cases (for the overlaid ROC and its AUC legend)."""
    view_truth, view_scores = view_score_sets(aligned, view)
    return {name: BinaryScores(view_truth, view_scores[name]) for name in aligned.names}


def data_size_label(per_class: int | None, fraction: float | None) -> str:
    """How much of the training data a run used, as the paper names it (full, N per class, TL<percent>)."""
    if per_class:
        return f"limited: {int(per_class):,} per class"
    if fraction is not None and float(fraction) < 1.0:
        return f"TL{round(float(fraction) * 100):g} ({float(fraction):.0%} of the training data)"
    return "full training data"


def learning_curve(summary: pd.DataFrame, training_images: Mapping[str, int | None], metric: str) -> pd.DataFrame:
    """Rows of `summary` with a known training size, sorted by it: x = training images, y = metric (+ interval)."""
    if metric not in summary.columns:
        raise InputError(f"no metric {metric!r} in the run summary; choose one of {list(summary.columns)}")
    frame = summary.assign(training_images=summary["run"].map(lambda r: training_images.get(r)))
    frame = frame[frame["training_images"].notna()].copy()
    frame["training_images"] = frame["training_images"].astype(int)
    columns = ["run", "training_images", metric]
    columns += [c for c in (f"{metric}_low", f"{metric}_high") if c in frame.columns]
    out = frame[columns].sort_values("training_images", kind="stable").reset_index(drop=True)
    if f"{metric}_low" not in out.columns:
        out[f"{metric}_low"] = math.nan
        out[f"{metric}_high"] = math.nan
    return out
