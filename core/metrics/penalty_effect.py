"""A user-edited penalty matrix: cell-by-cell validation and its effect on the model's weighted error and calls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from core.errors import InputError
from core.metrics import headline
from core.metrics.intervals import Interval
from core.metrics.penalties import (DecisionComparison, check_penalty_matrix, confusion_counts, decide,
                                    refuse_costless_mistakes, weighted_error)

_THREADPOOLS: list[ThreadpoolController] = []  # found once: a fresh scan of the loaded libraries cost ~10 ms per edit


def _one_blas_thread():
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


# The weighted error is a mean penalty per image; the page shows it per this many patients (one image each).
PATIENTS_PER_COST = 1000


@dataclass(frozen=True)
class PenaltyCheck:
    """A valid penalty matrix and the warnings about it that do not stop it being used."""

    matrix: np.ndarray
    warnings: tuple[str, ...]


def check_penalty_entries(values, classes: Sequence[str]) -> PenaltyCheck:
    """Validate an edited grid (rows = true class, columns = called class, in `classes` order).

    InputError names the first bad cell (empty, not a number, negative, infinite). A non-zero diagonal
    (a correct call that costs something) is allowed with a warning; a matrix whose mistakes all cost 0
    is refused (every weighted error would be 0).
    """
    classes = [str(c) for c in classes]
    k = len(classes)
    frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame(values)
    if frame.shape != (k, k):
        raise InputError(f"penalty matrix: must be {k}x{k} (rows = true class, columns = called class), "
                         f"got {frame.shape[0]}x{frame.shape[1]}")
    numbers = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    raw = frame.to_numpy(dtype=object)
    for i in range(k):
        for j in range(k):
            where = f"penalty matrix: row {classes[i]} (true), column {classes[j]} (called)"
            cell = raw[i, j]
            if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
                raise InputError(f"{where} is empty; enter a number (0 = no cost)")
            if math.isnan(numbers[i, j]):
                raise InputError(f"{where} is {str(cell)!r}, not a number")
            if not math.isfinite(numbers[i, j]):
                raise InputError(f"{where} must be finite, got {cell!r}")
            if numbers[i, j] < 0:
                raise InputError(f"{where} is {numbers[i, j]:g}; penalties cannot be negative")
    matrix = check_penalty_matrix(numbers, k)
    warnings = []
    diagonal = [classes[i] for i in range(k) if matrix[i, i] != 0]
    if diagonal:
        warnings.append(f"correct calls of {', '.join(diagonal)} have a non-zero penalty: the weighted error then "
                        "charges for being right (usually the diagonal is 0)")
    refuse_costless_mistakes(matrix)
    return PenaltyCheck(matrix, tuple(warnings))


@dataclass(frozen=True)
class PenaltyEffect:
    """The weighted error under argmax and under the penalty-minimising rule, with intervals and costs."""

    comparison: DecisionComparison
    argmax_weighted_error: Interval
    min_penalty_weighted_error: Interval
    penalty: np.ndarray
    per_patients: int = PATIENTS_PER_COST

    @property
    def count_change(self) -> np.ndarray:
        """Images gained (+) or lost (-) by each confusion cell when argmax calls give way to the rule."""
        return (np.asarray(self.comparison.min_penalty_confusion, dtype=np.int64)
                - np.asarray(self.comparison.argmax_confusion, dtype=np.int64))

    @property
    def argmax_cost(self) -> float:
        """Expected total penalty per `per_patients` patients (one image each) with argmax calls."""
        return self.argmax_weighted_error.value * self.per_patients

    @property
    def min_penalty_cost(self) -> float:
        return self.min_penalty_weighted_error.value * self.per_patients

    @property
    def cost_saved(self) -> float:
        return self.argmax_cost - self.min_penalty_cost


def penalty_effect(truth, probabilities, penalty, patient_codes=None, confidence: float = 0.95,
                   per_patients: int = PATIENTS_PER_COST) -> PenaltyEffect:
    """Weighted error of argmax calls vs penalty-minimising calls on the same images.

    The same numbers as compare_decision_rules, plus the headline weighted error's patient-bootstrap intervals
    (core.metrics.headline); each rule's calls are made once.
    """
    probs = np.asarray(probabilities, dtype=float)
    truth = np.asarray(truth, dtype=np.int64)
    k = probs.shape[1]
    matrix = check_penalty_matrix(penalty, k)
    # An (n x k) @ (k x k) product is memory-bound: BLAS threads only contend, and on a busy two-core server
    # they made it 40 times slower. One thread keeps a penalty edit on 100,000 images fast.
    with _one_blas_thread():
        argmax_calls = decide(probs, "argmax")
        bayes_calls = decide(probs, "min_penalty", matrix)
    argmax_confusion = confusion_counts(truth, argmax_calls, k)
    bayes_confusion = confusion_counts(truth, bayes_calls, k)
    comparison = DecisionComparison(argmax_confusion, bayes_confusion, weighted_error(argmax_confusion, matrix),
                                    weighted_error(bayes_confusion, matrix),
                                    int(np.count_nonzero(argmax_calls != bayes_calls)))
    return PenaltyEffect(comparison,
                         headline.weighted_error(truth, probs, argmax_calls, matrix, patient_codes,
                                                 confidence=confidence),
                         headline.weighted_error(truth, probs, bayes_calls, matrix, patient_codes,
                                                 confidence=confidence),
                         matrix, int(per_patients))


def penalty_table(effect: PenaltyEffect, readers: dict[str, dict] | None = None) -> pd.DataFrame:
    """The model (argmax and penalty-minimising) and each reader: weighted error, interval, cost per patients.

    Readers' rows also give the model's weighted error on exactly the images that reader graded.
    """
    matrix = np.asarray(effect.comparison.argmax_confusion)
    n = int(matrix.sum())
    per = effect.per_patients
    rows = []
    for name, kind, interval in (("model (most probable class)", "model", effect.argmax_weighted_error),
                                 ("model (penalty-minimising rule)", "model", effect.min_penalty_weighted_error)):
        rows.append({"name": name, "kind": kind, "images": n, "weighted_error": interval.value,
                     "weighted_error_low": interval.low, "weighted_error_high": interval.high,
                     f"cost_per_{per}": interval.value * per, "model_same_images": math.nan})
    penalty = effect.penalty
    for reader, entry in (readers or {}).items():
        value = weighted_error(entry["reader"], penalty)
        rows.append({"name": str(reader), "kind": "reader", "images": entry["images"], "weighted_error": value,
                     "weighted_error_low": math.nan, "weighted_error_high": math.nan,
                     f"cost_per_{per}": value * per, "model_same_images": weighted_error(entry["model"], penalty)})
    return pd.DataFrame(rows)
