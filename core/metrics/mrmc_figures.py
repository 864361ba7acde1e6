"""Reader figures of merit (empirical AUC, sensitivity, specificity) and their case-sampling covariances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.metrics.roc import delong_components, delong_covariance

FIGURES = ("auc", "sensitivity", "specificity")
COVARIANCES = ("jackknife", "delong", "unbiased")


@dataclass(frozen=True)
class BlockFigures:
    """Figures of merit of the readings that share one set of cases (rows = reading conditions).

    `jackknife` holds, per row, the figure recomputed with each resampled case left out (the
    diseased cases only for sensitivity, the non-diseased only for specificity, as MRMCaov does).
    """

    values: np.ndarray
    jackknife: np.ndarray
    covariance: np.ndarray | None = None


def _check_two_of_each(truth: np.ndarray, needed: tuple[str, ...], where: str) -> None:
    counts = {"diseased": int(truth.sum()), "non-diseased": int((~truth).sum())}
    for group in needed:
        if counts[group] < 2:
            raise InputError(f"{where}: {counts[group]} {group} case(s); the analysis needs at least two")


def block_figures(truth: np.ndarray, ratings: np.ndarray, figure: str, covariance: str,
                  threshold: float | None, where: str) -> BlockFigures:
    """Figures, leave-one-case-out values and (DeLong / unbiased) covariance for rows of `ratings`.

    truth: booleans per case (True = diseased); ratings: readings x cases; `where` names the cases
    in error messages (e.g. "cases read by reader 3").
    """
    ratings = np.atleast_2d(np.asarray(ratings, dtype=float))
    if figure == "auc":
        _check_two_of_each(truth, ("diseased", "non-diseased"), where)
        auc, v10, v01 = delong_components(truth, ratings)
        m, n = v10.shape[1], v01.shape[1]
        # Leaving out diseased case i removes its row of the pair kernel; non-diseased case k its column.
        jack = np.concatenate([(m * auc[:, None] - v10) / (m - 1), (n * auc[:, None] - v01) / (n - 1)], axis=1)
        cov = None
        if covariance == "delong":
            cov = delong_covariance(v10, v01)
        elif covariance == "unbiased":
            cov = _unbiased_auc_covariance(truth, ratings, auc, v10, v01)
        return BlockFigures(auc, jack, cov)
    if covariance != "jackknife":
        raise InputError(f"covariance {covariance!r} is defined for the empirical AUC only; "
                         f"use covariance='jackknife' for {figure}")
    positive = ratings >= threshold
    if figure == "sensitivity":
        _check_two_of_each(truth, ("diseased",), where)
        hits = positive[:, truth]
    else:
        _check_two_of_each(truth, ("non-diseased",), where)
        hits = ~positive[:, ~truth]
    k = hits.shape[1]
    total = hits.sum(axis=1, keepdims=True)
    return BlockFigures(total[:, 0] / k, (total - hits) / (k - 1))


def _unbiased_auc_covariance(truth, ratings, auc, v10, v01) -> np.ndarray:
    """Unbiased covariance of empirical AUCs on the same cases (U-statistic moments, Gallas 2006).

    Cov(A, B) = E[A] E[B] - E[psi_A(x, y) psi_B(x', y')] over distinct diseased x != x' and
    non-diseased y != y'; the second term is estimated by its own U-statistic, so the whole
    estimator is unbiased (the DeLong estimator is not).
    """
    m, n = v10.shape[1], v01.shape[1]
    positives, negatives = ratings[:, truth], ratings[:, ~truth]
    k = ratings.shape[0]
    # Pair kernels psi (1, 1/2, 0) for every reading, flattened: rows = readings, columns = (x, y) pairs.
    kernel = np.empty((k, m * n), dtype=np.float32)
    for row in range(k):
        diff = positives[row][:, None] - negatives[row][None, :]
        kernel[row] = (np.sign(diff) * 0.5 + 0.5).ravel()
    same_pair = kernel.astype(np.float64) @ kernel.T.astype(np.float64)       # sum over (x, y)
    same_diseased = (n * v10) @ (n * v10).T - same_pair                     # x = x', y != y'
    same_normal = (m * v01) @ (m * v01).T - same_pair                       # x != x', y = y'
    total = np.outer(auc, auc) * (m * n) ** 2
    distinct = (total - same_pair - same_diseased - same_normal) / (m * (m - 1) * n * (n - 1))
    return np.outer(auc, auc) - distinct
