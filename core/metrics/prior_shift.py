"""Label shift without labels: re-estimate a site's class prevalence from a model's probabilities, and adjust them.

Under *prior (label) shift* the class-conditional image distributions p(x | y) are those of training and only the
class prevalence differs. Then

- the posterior at a new prior q follows from the training posterior by Bayes' rule (`adjust_to_prior`):
  p_q(y | x) = p(y | x) q_y / pi_y / sum_k p(k | x) q_k / pi_k, where pi is the prior the model's probabilities are
  calibrated to (for a head trained with class balancing that is the *balanced* prior, not the data's counts);
- q itself is the maximum-likelihood solution found by the EM algorithm of Saerens, Latinne & Decaestecker
  (Neural Computation 14:21-41, 2002) (`em_prevalence`): alternate the adjustment above with q = mean posterior.
  Its interval is a percentile bootstrap over images, or over patients when patient ids are given (a patient's
  images go in and out together), re-running EM on each resample;
- black-box shift estimation (Lipton, Wang & Smola, ICML 2018) (`bbse_prevalence`) solves C w = mu instead, where
  C is the joint confusion matrix of the model's hard calls on held-out labelled source data and mu the site's
  distribution of calls; it needs no calibration, only an invertible confusion matrix.

In log space the adjustment is a constant added to each class's logit, log(q_y / pi_y) (`prior_log_ratio`), so a
softmax head whose last layer's bias gets that constant outputs the adjusted posteriors exactly.

Sensitivity and specificity at a fixed cut on the *unadjusted* score are class-conditional rates, which prior
shift leaves unchanged; an operating point chosen by such a rule (Youden's J, a sensitivity target) is therefore
kept under prior shift by moving its threshold with the adjustment (`adjust_threshold`), not by keeping the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.metrics.bootstrap import patient_groups, percentile_interval, resample_patient_counts
from core.metrics.intervals import Interval, check_confidence

EM_METHOD = "EM (Saerens, Latinne & Decaestecker 2002)"
BBSE_METHOD = "black-box shift estimation (Lipton, Wang & Smola 2018)"
# Priors are kept off exact zero so the log-ratio bias stays finite and EM can move a class back.
PRIOR_FLOOR = 1e-6


@dataclass(frozen=True)
class PriorEstimate:
    """The estimated class prior on unlabelled data: one value and interval per class, in class order."""

    prior: tuple[float, ...]
    intervals: tuple[Interval, ...]
    train_prior: tuple[float, ...]
    iterations: int
    converged: bool
    n: int
    method: str = EM_METHOD
    classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        names = list(self.classes) if self.classes else [str(k) for k in range(len(self.prior))]
        return {"method": self.method, "n": self.n, "iterations": self.iterations, "converged": self.converged,
                "classes": names, "prior": [float(v) for v in self.prior],
                "train_prior": [float(v) for v in self.train_prior],
                "intervals": {c: iv.to_dict() for c, iv in zip(names, self.intervals)}}


def check_prior(prior, k: int, name: str = "prior") -> np.ndarray:
    """`prior` as a float array of k positive values summing to 1 (renormalised if off by rounding), or InputError."""
    try:
        values = np.asarray(prior, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be {k} numbers, one per class, got {prior!r}") from None
    if values.size != k:
        raise InputError(f"{name} must have one value per class ({k}), got {values.size}")
    if not np.isfinite(values).all() or (values <= 0).any():
        raise InputError(f"{name} must be positive for every class (a class the model never saw has no prior), "
                         f"got {[round(float(v), 6) for v in values]}")
    total = float(values.sum())
    if abs(total - 1.0) > 1e-3:
        raise InputError(f"{name} must sum to 1, got {total:.6g}")
    return values / total


def check_probabilities(probabilities) -> np.ndarray:
    """(n, k) rows of class probabilities, k >= 2, no NaN, each row summing to 1 (within 1e-3), or InputError."""
    try:
        p = np.asarray(probabilities, dtype=float)
    except (TypeError, ValueError):
        raise InputError("probabilities must be numbers") from None
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"probabilities must be a table of n images x k >= 2 classes, got shape {p.shape}")
    if p.shape[0] == 0:
        raise InputError("no images: the class prior cannot be estimated from zero probabilities")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("probabilities must be finite and non-negative (a row holds NaN or a negative value)")
    sums = p.sum(axis=1)
    if (np.abs(sums - 1.0) > 1e-3).any():
        raise InputError("each row of probabilities must sum to 1 (single-label classes); "
                         f"row sums range from {sums.min():.4g} to {sums.max():.4g}")
    return p / sums[:, None]


def prior_log_ratio(train_prior, new_prior) -> np.ndarray:
    """log(new_prior / train_prior) per class: the constant added to each logit by the Bayes adjustment."""
    pi = check_prior(train_prior, len(np.asarray(train_prior).reshape(-1)), "training prior")
    q = check_prior(new_prior, pi.size, "new prior")
    return np.log(np.maximum(q, PRIOR_FLOOR)) - np.log(pi)


def adjust_to_prior(probabilities, train_prior, new_prior) -> np.ndarray:
    """Posteriors at `new_prior` from posteriors calibrated at `train_prior` (Bayes' rule, Saerens et al. eq. 2.4)."""
    p = check_probabilities(probabilities)
    ratio = np.exp(prior_log_ratio(check_prior(train_prior, p.shape[1], "training prior"), new_prior))
    return _adjust(p, ratio)


def _adjust(p: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    w = p * ratio
    return w / w.sum(axis=-1, keepdims=True)


def em_prevalence(probabilities, train_prior, *, max_iter: int = 1000, tol: float = 1e-8, patient_ids=None,
                  n_resamples: int = 200, confidence: float = 0.95, seed: int = 0,
                  classes=None) -> PriorEstimate:
    """The site's class prior by EM on calibrated posteriors of its unlabelled images, with bootstrap intervals.

    Starts from the training prior; stops when no class's prior moves by more than `tol` in one step (converged) or
    after `max_iter` steps (not converged: the estimate is then the last iterate, and the caller should not trust
    it). The interval re-runs EM on `n_resamples` percentile-bootstrap resamples of the images (of the patients
    when `patient_ids` is given), each started from the estimate."""
    p = check_probabilities(probabilities)
    n, k = p.shape
    pi = check_prior(train_prior, k, "training prior")
    if int(max_iter) < 1:
        raise InputError(f"max_iter must be at least 1, got {max_iter}")
    if not (float(tol) > 0):
        raise InputError(f"tol must be positive, got {tol}")
    level = check_confidence(confidence)
    names = tuple(str(c) for c in classes) if classes is not None else None
    if names is not None and len(names) != k:
        raise InputError(f"{len(names)} class names for {k} probability columns")

    q, iterations, converged = _em(p, pi, np.ones((1, n)), pi[None, :], int(max_iter), float(tol))
    estimate = q[0]
    groups, n_groups = patient_groups(patient_ids, n)
    unit = "patients" if patient_ids is not None else "images"
    reps = []
    # Replicates run together: (chunk, n) weights, each row one resample, EM vectorised over rows.
    for counts in resample_patient_counts(n_groups, n_resamples, seed, _chunk(n, k)):
        weights = counts[:, groups].astype(float)
        start = np.repeat(estimate[None, :], len(weights), axis=0)
        reps.append(_em(p, pi, weights, start, int(max_iter), float(tol))[0])
    replicates = np.concatenate(reps, axis=0)
    intervals = tuple(percentile_interval(float(estimate[j]), replicates[:, j], level, n,
                                          f"by {unit}, EM re-run on each")
                      for j in range(k))
    return PriorEstimate(tuple(float(v) for v in estimate), intervals, tuple(float(v) for v in pi), iterations,
                         converged, n, EM_METHOD, names)


def _chunk(n: int, k: int) -> int:
    return max(1, min(200, 4_000_000 // max(n * k, 1)))


def _em(p: np.ndarray, pi: np.ndarray, weights: np.ndarray, start: np.ndarray, max_iter: int,
        tol: float) -> tuple[np.ndarray, int, bool]:
    """EM for each row of `weights` (how often each image counts): (priors (rows, k), steps taken, all converged)."""
    q = start.copy()
    total = weights.sum(axis=1, keepdims=True)
    for step in range(1, max_iter + 1):
        posterior = _adjust(p[None, :, :], (q / pi)[:, None, :])           # (rows, n, k)
        new = np.einsum("rn,rnk->rk", weights, posterior) / total
        new = np.maximum(new, PRIOR_FLOOR)
        new /= new.sum(axis=1, keepdims=True)
        moved = float(np.abs(new - q).max())
        q = new
        if moved < tol:
            return q, step, True
    return q, max_iter, False


def bbse_prevalence(source_truth, source_calls, site_calls, train_prior, k: int) -> np.ndarray:
    """Black-box shift estimate of the site prior from hard calls (class indices 0..k-1).

    C[i, j] = P_source(call i, truth j) on held-out labelled source data (out-of-fold predictions), mu[i] = P_site(call
    i); the weights w = C^-1 mu give the site prior w_j * p_source(j), clipped at zero and renormalised. `train_prior`
    is the source data's class distribution (the one C was measured on). InputError when C is singular."""
    truth = np.asarray(source_truth, dtype=np.int64).reshape(-1)
    calls = np.asarray(source_calls, dtype=np.int64).reshape(-1)
    site = np.asarray(site_calls, dtype=np.int64).reshape(-1)
    if truth.size != calls.size or truth.size == 0 or site.size == 0:
        raise InputError("black-box shift estimation needs labelled source calls and site calls (none, or the "
                         "source truth and calls differ in length)")
    for name, values in (("source truth", truth), ("source calls", calls), ("site calls", site)):
        if values.min() < 0 or values.max() >= k:
            raise InputError(f"{name} must be class indices between 0 and {k - 1}")
    pi = check_prior(train_prior, k, "source prior")
    joint = np.zeros((k, k))
    np.add.at(joint, (calls, truth), 1.0)
    joint /= truth.size
    mu = np.bincount(site, minlength=k) / site.size
    if np.linalg.matrix_rank(joint) < k:
        raise InputError("black-box shift estimation: the source confusion matrix is singular (a class is never "
                         "called, or two classes are confused alike); it cannot be inverted")
    w = np.linalg.solve(joint, mu)
    q = np.maximum(w * pi, 0.0)
    if q.sum() <= 0:
        raise InputError("black-box shift estimation gave no positive prior (the site's calls fit no mixture of the "
                         "source classes)")
    return q / q.sum()


def adjust_threshold(threshold: float, positive, train_prior, new_prior) -> float:
    """The cut on the adjusted view score that makes the same calls as `threshold` on the unadjusted one.

    `positive` are the class indices on the view's positive side. The view score is the sum of the positive
    classes' probabilities; with a single positive and a single negative class (or when the adjustment ratio
    q/pi is the same within each side) the adjusted score is a monotone function of the old one,
    odds' = odds * R_pos / R_neg, so the mapped cut gives exactly the same calls. With several classes on a side and
    different ratios within it the mapping uses the side totals (R = q_side / pi_side): the calls of a case whose
    positive (or negative) classes are mixed may then differ. Rules defined by class-conditional rates (Youden's J,
    a sensitivity target) are unchanged by prior shift, so this is the threshold that keeps the rule."""
    t = float(threshold)
    if not math.isfinite(t):
        raise InputError(f"threshold must be a number, got {threshold!r}")
    pi = check_prior(train_prior, len(np.asarray(train_prior).reshape(-1)), "training prior")
    q = check_prior(new_prior, pi.size, "new prior")
    pos = np.zeros(pi.size, dtype=bool)
    pos[np.asarray(list(positive), dtype=np.int64)] = True
    if pos.all() or not pos.any():
        raise InputError("a threshold's view needs classes on both sides")
    if t <= 0.0 or t >= 1.0:
        return t  # every case (t <= 0) or none (t >= 1) is positive, on any scale
    r_pos = q[pos].sum() / pi[pos].sum()
    r_neg = q[~pos].sum() / pi[~pos].sum()
    odds = t / (1.0 - t) * r_pos / r_neg
    return float(odds / (1.0 + odds))


def view_consistent_prior(train_prior, new_prior, positive) -> np.ndarray:
    """The prior to adjust to when a binary view decides the calls: each side of the view takes its estimated total
    (q_side), shared among its classes in their training proportions (q_c = pi_c * q_side / pi_side).

    Re-weighting the classes within one side by different ratios (bacterial and viral pneumonia, say) re-ranks the
    view's summed score and costs AUC under shift (benchmarks/bench_sites.py, chest X-ray sample -> PneumoniaMNIST:
    0.817 -> 0.771); with one ratio per side the adjusted view score is a monotone function of the old one, so the
    ranking is untouched and adjust_threshold keeps every call exactly."""
    pi = check_prior(train_prior, len(np.asarray(train_prior).reshape(-1)), "training prior")
    q = check_prior(new_prior, pi.size, "new prior")
    pos = np.zeros(pi.size, dtype=bool)
    pos[np.asarray(list(positive), dtype=np.int64)] = True
    if pos.all() or not pos.any():
        raise InputError("a view needs classes on both sides")
    out = np.where(pos, pi * q[pos].sum() / pi[pos].sum(), pi * q[~pos].sum() / pi[~pos].sum())
    return out / out.sum()


def training_prior_record(classes, counts, balance: str = "none") -> dict:
    """The model card's `training_prior`: the class prior the head's probabilities are calibrated to.

    Without class balancing that is the training images' class shares. With balancing (`balance` 'weights' or
    'sampler': loss weights inversely proportional to the counts, or a sampler drawing each class equally) every
    class with training images weighs the same, so the probabilities are calibrated to the *balanced* prior
    (equal shares of the classes present), not to the data's. `counts` are kept either way."""
    counts = np.asarray(counts, dtype=float).reshape(-1)
    names = [str(c) for c in classes]
    if counts.size != len(names) or (counts < 0).any() or counts.sum() <= 0:
        raise InputError(f"training prior: {counts.size} class counts for {len(names)} classes, or none positive")
    balanced = str(balance) != "none"
    prior = (counts > 0) / float((counts > 0).sum()) if balanced else counts / counts.sum()
    basis = (f"balanced: equal shares of the classes with training images (class balancing {balance!r})"
             if balanced else "the training images' class shares")
    return {"classes": names, "prior": [float(v) for v in prior], "counts": [int(v) for v in counts],
            "basis": basis}
