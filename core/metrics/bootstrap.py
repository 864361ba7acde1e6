"""Seeded bootstrap intervals that resample patients (not images) for statistics without a closed form."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from core.errors import InputError
from core.metrics.intervals import Interval, check_confidence

# Replicates are drawn in chunks so memory stays near this many cells, whatever n and the resample count.
_CELLS_PER_CHUNK = 2_000_000


def patient_groups(patient_ids, n: int) -> tuple[np.ndarray, int]:
    """Group code per image and the number of groups; images without a patient id are their own group."""
    if patient_ids is None:
        return np.arange(n, dtype=np.int64), n
    ids = pd.Series(np.asarray(patient_ids, dtype=object))
    if len(ids) != n:
        raise InputError(f"{len(ids)} patient ids for {n} images")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes, len(uniques) + int(missing.sum())


def chunk_size(n: int) -> int:
    """Replicates per chunk for n images (the fast and the generic path use the same rule, hence the same draws)."""
    return max(1, min(256, _CELLS_PER_CHUNK // max(n, 1)))


def resample_patient_counts(n_groups: int, n_resamples: int = 1000, seed: int = 0,
                            chunk: int | None = None) -> Iterator[np.ndarray]:
    """Yield int32 arrays (replicates, n_groups): how often each patient is drawn in each replicate."""
    if int(n_resamples) < 1:
        raise InputError(f"number of bootstrap resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    chunk = chunk or chunk_size(n_groups)
    remaining = int(n_resamples)
    while remaining > 0:
        b = min(chunk, remaining)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        flat = (np.arange(b, dtype=np.int64)[:, None] * n_groups + draws).ravel()
        yield np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups).astype(np.int32)
        remaining -= b


def resample_weights(n: int, patient_ids=None, n_resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield float arrays (replicates, n): how often each image enters each bootstrap replicate.

    Patients are drawn with replacement, and a drawn patient brings all of their images, so images of
    one patient (e.g. both eyes, repeated scans) never count as independent evidence.
    """
    groups, n_groups = patient_groups(patient_ids, n)
    for counts in resample_patient_counts(n_groups, n_resamples, seed, chunk_size(n)):
        yield counts[:, groups].astype(float)


def percentile_interval(value: float, replicates: np.ndarray, confidence: float, n: int | None,
                        what: str = "") -> Interval:
    """Percentile bootstrap interval; replicates where the statistic is undefined (NaN) are left out."""
    level = check_confidence(confidence)
    reps = np.asarray(replicates, dtype=float)
    ok = np.isfinite(reps)
    method = f"bootstrap percentile ({reps.size} resamples{', ' + what if what else ''})"
    if not ok.any() or not math.isfinite(value):
        return Interval(value, math.nan, math.nan, method, n=n, confidence=level,
                        reason="the statistic is undefined in the data or in every resample")
    low, high = np.quantile(reps[ok], [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    reason = ""
    if not ok.all():
        reason = f"{int((~ok).sum())} of {reps.size} resamples left out (statistic undefined in them)"
    return Interval(float(value), float(min(low, value)), float(max(high, value)), method, n=n,
                    confidence=level, reason=reason)


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, patient_ids=None, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> Interval:
    """Generic (slower) bootstrap: `statistic(indices)` evaluated on resampled image indices.

    Uses the same replicates as the fast weighted statistics below for the same n, ids and seed.
    """
    everything = np.arange(n)
    value = float(statistic(everything))
    reps = []
    for weights in resample_weights(n, patient_ids, n_resamples, seed):
        for row in weights.astype(np.int64):
            reps.append(float(statistic(np.repeat(everything, row))))
    unit = "patients" if patient_ids is not None else "images"
    return percentile_interval(value, np.array(reps), confidence, n, f"by {unit}")


# -- statistics of resampled patients (one row of patient counts per replicate) -------------------------

class PatientSums:
    """Per-patient sums of per-image values, so a replicate's mean is one small matrix product."""

    def __init__(self, groups: np.ndarray, n_groups: int):
        self.groups = groups
        self.n_groups = n_groups
        self.images = np.bincount(groups, minlength=n_groups).astype(float)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(n_groups,) or (n_groups, k) sums of `values` over each patient's images."""
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            return np.bincount(self.groups, weights=values, minlength=self.n_groups)
        return np.stack([np.bincount(self.groups, weights=values[:, j], minlength=self.n_groups)
                         for j in range(values.shape[1])], axis=1)


class RankedScores:
    """One binary score ranked once, so each bootstrap replicate's AUC is a few passes over the patients.

    For resampled data the AUC is sum over positives of (weight x weight of negatives scoring lower, ties
    counting one half) / (positive weight x negative weight); the negatives' cumulative weight in score
    order is looked up at each positive's precomputed rank. With integer weights this equals the AUC of
    the resampled data set exactly.
    """

    def __init__(self, truth: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None):
        truth = np.asarray(truth, dtype=bool)
        scores = np.asarray(scores, dtype=float)
        groups = np.arange(truth.size) if groups is None else np.asarray(groups)
        order = np.argsort(scores[~truth], kind="stable")
        negative_scores = scores[~truth][order]
        self.negative_groups = groups[~truth][order]
        self.positive_groups = groups[truth]
        self.below = np.searchsorted(negative_scores, scores[truth], side="left")
        self.below_or_tied = np.searchsorted(negative_scores, scores[truth], side="right")
        self.has_ties = bool((self.below != self.below_or_tied).any())

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """AUC per replicate; counts: (replicates, n_groups) draws per patient (one row of ones = the data)."""
        counts = np.asarray(counts)
        b = counts.shape[0]
        # int32 halves the memory traffic; products stay below 2**31 unless there are tens of millions of images.
        dtype = np.int32 if self.negative_groups.size + self.positive_groups.size < 20_000_000 else np.int64
        cumulative = np.zeros((b, self.negative_groups.size + 1), dtype=dtype)
        np.cumsum(counts[:, self.negative_groups], axis=1, out=cumulative[:, 1:])
        weight = counts[:, self.positive_groups].astype(dtype, copy=False)
        wins = (weight * cumulative[:, self.below]).sum(axis=1, dtype=np.int64).astype(float)
        if self.has_ties:
            tied = (weight * cumulative[:, self.below_or_tied]).sum(axis=1, dtype=np.int64)
            wins = 0.5 * (wins + tied)
        # Totals from the arrays already built (a matrix product here costs more than the sums).
        pairs = weight.sum(axis=1, dtype=np.int64).astype(float) * cumulative[:, -1].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
