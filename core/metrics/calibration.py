"""Calibration: reliability bins, expected calibration error and the Brier score."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins of predicted probability: how often the event happened in each.

    Empty bins hold NaN means and a count of 0. `ece` = sum over bins of (count / n) * |observed - predicted|;
    `mce` is the largest such gap over non-empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    ece: float
    mce: float


def reliability_bins(predicted, outcome, n_bins: int = 10) -> ReliabilityBins:
    """Bin predicted probabilities into `n_bins` equal-width bins on [0, 1] and compare with the outcome rate.

    predicted: probability of the event per case; outcome: 1 if it happened. For a multi-class model use
    the top probability and whether the call was right (`top_label_reliability`).
    """
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(outcome, dtype=float)
    if p.ndim != 1 or p.shape != y.shape:
        raise InputError(f"predicted probabilities and outcomes must be 1-D and equally long: {p.shape} vs {y.shape}")
    if int(n_bins) < 1:
        raise InputError(f"number of calibration bins must be at least 1, got {n_bins}")
    n_bins = int(n_bins)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError("predicted probabilities must lie between 0 and 1")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are [a, b) except the last, which also takes p = 1.
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    sums_p = np.bincount(which, weights=p, minlength=n_bins)
    sums_y = np.bincount(which, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sums_p / counts, np.nan)
        observed = np.where(counts > 0, sums_y / counts, np.nan)
    gaps = np.abs(observed - mean_p)
    filled = counts > 0
    n = p.size
    ece = float((counts[filled] / n * gaps[filled]).sum()) if n else math.nan
    mce = float(gaps[filled].max()) if filled.any() else math.nan
    return ReliabilityBins(edges, counts, mean_p, observed, ece, mce)


def top_label_reliability(y_true, probabilities, n_bins: int = 10) -> ReliabilityBins:
    """Reliability of the model's confidence in its own call (highest probability vs being right)."""
    probs = np.asarray(probabilities, dtype=float)
    truth = np.asarray(y_true, dtype=np.int64)
    return reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == truth, n_bins)


def expected_calibration_error(y_true, probabilities, n_bins: int = 10) -> float:
    """Top-label expected calibration error (Guo et al. 2017) with equal-width bins."""
    return top_label_reliability(y_true, probabilities, n_bins).ece


def brier_score(y_true, probabilities) -> float:
    """Multi-class Brier score: mean over cases of sum over classes (p - 1[true class])^2 (0 best, 2 worst).

    For a binary problem given as one column of P(positive) and 0/1 truth, it is the usual
    mean (p - y)^2 (scikit-learn's brier_score_loss).
    """
    probs = np.asarray(probabilities, dtype=float)
    truth = np.asarray(y_true)
    if truth.size == 0:
        return math.nan
    if probs.ndim == 1:
        return float(np.mean((probs - truth.astype(float)) ** 2))
    onehot = np.zeros_like(probs)
    onehot[np.arange(truth.size), truth.astype(np.int64)] = 1.0
    return float(np.mean(((probs - onehot) ** 2).sum(axis=1)))
