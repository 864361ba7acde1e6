"""The linear probe: L2 logistic regression on cached features, its strength chosen by patient-grouped CV.

Kermany et al. trained a new softmax layer on frozen bottleneck features. With a few hundred images per class, the
one knob that matters is how strongly that layer is regularised; choosing it by cross-validation grouped by patient
(no patient on both sides of a fold) and then refitting on every training image uses all of the limited data,
where a single 20% validation split throws a fifth of it away and gives a noisy choice. The out-of-fold
probabilities of the chosen strength are kept: they set the model's operating point without touching test data.

Features are used raw: standardising them amplifies the shift between training originals and test images that
arrive resized or re-encoded (measured in benchmarks/bench_recipes.py).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from threadpoolctl import threadpool_limits

from core.errors import InputError

# Inverse regularisation strengths tried (sklearn's C); raw pooled features are O(1) in 1,000-4,000 dimensions (the
# Lite0+1+2 ensemble with acquisition views chose 0.003 on the 750 chest X-rays, so the grid reaches below it).
DEFAULT_CS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
DEFAULT_FOLDS = 5
MAX_ITER = 500


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe as torch-ready arrays, with what cross-validation found.

    weight (k, d) and bias (k,) give logits for the task's k classes (softmax), or per-label logits (sigmoid)
    for multi-label tasks. oof_probabilities are the held-out-fold probabilities, at the chosen C, of the rows
    marked as originals (row order kept); cv_log_loss maps each C tried to its mean held-out log loss.
    """

    weight: np.ndarray
    bias: np.ndarray
    C: float
    cv_log_loss: dict[float, float]
    oof_probabilities: np.ndarray
    oof_rows: np.ndarray
    folds: int

    def head_state(self) -> dict[str, torch.Tensor]:
        """State dict for create_head(..., 'linear'): its Linear layer sits at index 1 of the Sequential."""
        return {"1.weight": torch.as_tensor(self.weight, dtype=torch.float32),
                "1.bias": torch.as_tensor(self.bias, dtype=torch.float32)}

    def summary(self) -> dict:
        return {"C": self.C, "folds": self.folds, "cv_log_loss": {f"{c:g}": v for c, v in self.cv_log_loss.items()}}


def _model(C: float, balanced: bool, seed: int) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=MAX_ITER, class_weight="balanced" if balanced else None,
                              random_state=seed, warm_start=True)


def _log_loss(probs: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    eps = 1e-12
    if multilabel:
        p = np.clip(probs, eps, 1 - eps)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    picked = probs[np.arange(len(y)), y.astype(int)]
    return float(-np.log(np.clip(picked, eps, 1.0)).mean())


class _Fitter:
    """One sklearn model per output (one for single-label tasks, one per label for multi-label)."""

    def __init__(self, C: float, balanced: bool, seed: int, n_outputs: int):
        self.models = [_model(C, balanced, seed) for _ in range(n_outputs)]

    def set_C(self, C: float) -> None:
        for m in self.models:
            m.set_params(C=C)

    def fit(self, x: np.ndarray, y: np.ndarray, multilabel: bool) -> "_Fitter":
        # One BLAS thread: these products are small, and a second thread on a busy 2-core machine made a fit 13x
        # slower (measured).
        with warnings.catch_warnings(), threadpool_limits(1):
            # A path of strengths, each warm-started from the last: an unconverged step is refined by the next.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if multilabel:
                for j, m in enumerate(self.models):
                    m.fit(x, y[:, j])
            else:
                self.models[0].fit(x, y)
        return self

    def probabilities(self, x: np.ndarray, multilabel: bool, num_classes: int) -> np.ndarray:
        with threadpool_limits(1):
            return self._probabilities(x, multilabel, num_classes)

    def _probabilities(self, x: np.ndarray, multilabel: bool, num_classes: int) -> np.ndarray:
        if multilabel:
            return np.column_stack([m.predict_proba(x)[:, 1] for m in self.models])
        m = self.models[0]
        out = np.zeros((len(x), num_classes))
        out[:, m.classes_.astype(int)] = m.predict_proba(x)
        return out

    def linear(self, num_classes: int, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
        if multilabel:
            return (np.vstack([m.coef_ for m in self.models]), np.concatenate([m.intercept_ for m in self.models]))
        m = self.models[0]
        classes = m.classes_.astype(int)
        weight = np.zeros((num_classes, m.coef_.shape[1]))
        bias = np.full(num_classes, -1e4)  # a class absent from training is never predicted
        if len(classes) == 2 and m.coef_.shape[0] == 1:
            # sklearn's binary model is one logit z for the second class; softmax([-z/2, z/2]) = [1 - s(z), s(z)].
            weight[classes[0]], weight[classes[1]] = -m.coef_[0] / 2, m.coef_[0] / 2
            bias[classes[0]], bias[classes[1]] = -m.intercept_[0] / 2, m.intercept_[0] / 2
        else:
            weight[classes], bias[classes] = m.coef_, m.intercept_
        return weight, bias


def _splits(y: np.ndarray, groups: np.ndarray, folds: int, seed: int, multilabel: bool):
    n_groups = len(np.unique(groups))
    folds = min(folds, n_groups)
    if folds < 2:
        return [], folds
    if multilabel:
        return list(GroupKFold(n_splits=folds).split(np.zeros(len(y)), groups=groups)), folds
    counts = np.bincount(y.astype(int))
    if counts[counts > 0].min() >= folds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y, groups)), folds
    return list(GroupKFold(n_splits=folds).split(np.zeros(len(y)), groups=groups)), folds


def fit_logistic_probe(features, targets, groups, *, num_classes: int, kind: str = "multiclass",
                       balance: str = "none", seed: int = 0, Cs=DEFAULT_CS, folds: int = DEFAULT_FOLDS,
                       original=None, on_fold=None) -> ProbeFit:
    """Choose C by grouped k-fold CV (mean held-out log loss on original rows), then refit on every row.

    features (n, d); targets class indices (n,) or a 0/1 matrix (n, k) for multi-label; groups (n,) patient ids
    (every view of an image and every image of a patient share one); `original` (n,) marks rows that are images
    as stored (not augmented views): only they are scored and returned out of fold. With fewer than 2 groups no CV
    is possible and the middle C is used.

    `on_fold(done, folds, {C: held-out log loss so far})`, when given, is called after each fold: the curve a live
    view draws while the fit goes on (the held-out rows of the folds done so far, pooled as at the end).
    """
    x = np.asarray(features, dtype=np.float64)
    # Centred features give the same model (the intercept is not penalised) but lbfgs converges ~5x faster on
    # them (27 vs 143 iterations, measured); the centre is folded back into the bias at the end.
    centre = x.mean(axis=0) if len(x) else np.zeros(x.shape[1:])
    x = x - centre
    multilabel = kind == "multilabel"
    y = np.asarray(targets, dtype=np.float64 if multilabel else np.int64)
    groups = np.asarray(groups)
    original = np.ones(len(x), dtype=bool) if original is None else np.asarray(original, dtype=bool)
    if x.ndim != 2 or len(x) != len(y) or len(x) != len(groups) or len(x) != len(original):
        raise InputError("linear probe: features, targets, groups and original must have one row per image")
    if len(x) == 0:
        raise InputError("linear probe: no training images")
    if not multilabel and len(np.unique(y)) < 2:
        raise InputError(f"linear probe: training images of one class only ({np.unique(y).tolist()})")
    Cs = sorted(float(c) for c in Cs)
    balanced = balance != "none"
    n_out = y.shape[1] if multilabel else 1
    splits, n_folds = _splits(y, groups, folds, seed, multilabel)
    oof_rows = np.flatnonzero(original)
    losses: dict[float, float] = {}
    oof_by_c: dict[float, np.ndarray] = {}
    if splits:
        oof = {c: np.full((len(x), num_classes), np.nan) for c in Cs}
        scored_so_far = np.zeros(len(x), dtype=bool)
        for done, (train, held) in enumerate(splits, start=1):
            held = held[original[held]]
            if len(held) and (multilabel or len(np.unique(y[train])) >= 2):
                fitter = _Fitter(Cs[0], balanced, seed, n_out)
                for c in Cs:  # warm-started path from strong to weak regularisation
                    fitter.set_C(c)
                    fitter.fit(x[train], y[train], multilabel)
                    oof[c][held] = fitter.probabilities(x[held], multilabel, num_classes)
                scored_so_far[held] = True
            if on_fold is not None:
                rows = np.flatnonzero(scored_so_far)
                on_fold(done, len(splits), {c: _log_loss(oof[c][rows], y[rows], multilabel) for c in Cs}
                        if len(rows) else {})
        scored = ~np.isnan(oof[Cs[0]][oof_rows]).any(axis=1)
        if scored.any():
            rows = oof_rows[scored]
            losses = {c: _log_loss(oof[c][rows], y[rows], multilabel) for c in Cs}
            oof_by_c = {c: oof[c][oof_rows] for c in Cs}
    if losses:
        best = min(Cs, key=lambda c: (losses[c], -c if math.isfinite(losses[c]) else 0))
    else:
        best = Cs[len(Cs) // 2]
    fitter = _Fitter(best, balanced, seed, n_out).fit(x, y, multilabel)
    weight, bias = fitter.linear(num_classes, multilabel)
    bias = bias - weight @ centre
    oof_probs = oof_by_c.get(best, np.full((len(oof_rows), num_classes), np.nan))
    return ProbeFit(weight, bias, best, losses, oof_probs, oof_rows, n_folds if splits else 0)
