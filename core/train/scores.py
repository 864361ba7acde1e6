"""Validation scores during training (accuracy, AUROC, kappa, loss) straight from sklearn, per task kind."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import cohen_kappa_score, roc_auc_score

# Scores where lower is better; every other one is maximised by best-checkpoint selection.
LOWER_IS_BETTER = frozenset({"loss"})
# How each score is named to people (Home, the Train page); the keys are the names runs store.
SCORE_TITLES = {"accuracy": "Accuracy", "auroc": "AUROC", "kappa": "Kappa", "loss": "Loss"}


def score_title(name: str | None) -> str:
    """A stored score name as people read it ("auroc" -> "AUROC"); an unknown name as it is."""
    return SCORE_TITLES.get(str(name or ""), str(name or "score"))


def _auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary AUROC, NaN when only one class is present (AUROC is undefined there)."""
    if y_true.min() == y_true.max():
        return math.nan
    return float(roc_auc_score(y_true, score))


def _mean_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def score_predictions(kind: str, probs: np.ndarray, targets: np.ndarray, loss: float | None = None,
                      calls: np.ndarray | None = None) -> dict:
    """accuracy, auroc (binary; macro one-vs-rest over classes present; macro over labels for multi-label),
    kappa (quadratic-weighted for ordinal tasks, Cohen's otherwise) and loss. Undefined scores are NaN.
    calls: the class index called per image (default: the most probable class); the test scores pass the model's
    own calls (model_call_indices), so that they agree with `predict` on the same images."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    out = {"loss": math.nan if loss is None else float(loss), "n": int(len(probs))}
    if len(probs) == 0:
        return {**out, "accuracy": math.nan, "auroc": math.nan, "kappa": math.nan}
    k = probs.shape[1]
    if kind == "multilabel":
        truth = targets.astype(int)
        pred = (probs >= 0.5).astype(int)
        out["accuracy"] = float((pred == truth).mean())
        out["auroc"] = _mean_finite([_auroc(truth[:, j], probs[:, j]) for j in range(k)])
        kappas = []
        for j in range(k):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                kappas.append(float(cohen_kappa_score(truth[:, j], pred[:, j], labels=[0, 1])))
        out["kappa"] = _mean_finite(kappas)
        return out
    truth = targets.astype(int)
    pred = probs.argmax(axis=1) if calls is None else np.asarray(calls, dtype=int)
    out["accuracy"] = float((pred == truth).mean())
    if k == 2:
        out["auroc"] = _auroc(truth, probs[:, 1])
    else:
        out["auroc"] = _mean_finite([_auroc((truth == j).astype(int), probs[:, j]) for j in range(k)])
    with warnings.catch_warnings():
        # One class only (tiny validation sets) makes kappa 0/0: sklearn warns and returns NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = cohen_kappa_score(truth, pred, labels=list(range(k)),
                                  weights="quadratic" if kind == "ordinal" else None)
    out["kappa"] = float(kappa) if np.isfinite(kappa) else math.nan
    return out


def model_call_indices(task, probs: np.ndarray, operating_point) -> np.ndarray | None:
    """The class index of the model's call per image, made as `predict` makes its `predicted` column
    (core.infer.predictions.model_calls: the operating point's view and threshold decide the side, through
    core.metrics.dashboard.calls_at_threshold; argmax without a point); None for multi-label tasks. core.train may
    not import core.infer (it imports core.train), so the rule is called where it lives, in core.metrics."""
    if task.kind == "multilabel" or probs is None or not len(probs):
        return None
    probs = np.asarray(probs, dtype=float)
    if operating_point is None:
        return probs.argmax(axis=1)
    from core.metrics.dashboard import calls_at_threshold

    return calls_at_threshold(probs, task.classes, operating_point.binary_view, operating_point.threshold)


def model_call_scores(task, kind: str, probs: np.ndarray | None, targets: np.ndarray, scores: dict,
                      operating_point) -> dict:
    """Test scores re-scored with the model's own calls (its operating point), keeping the loss: what `train`
    prints and stores for the test split, the same accuracy `predict` then gives."""
    if not scores or probs is None or task.kind == "multilabel":
        return scores
    return score_predictions(kind, probs, targets, scores.get("loss"),
                             calls=model_call_indices(task, probs, operating_point))


def is_better(name: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value < best if name in LOWER_IS_BETTER else value > best


class BestTracker:
    """Best-checkpoint selection and early stopping on one validation score."""

    def __init__(self, metric: str, patience: int = 0):
        self.metric = metric
        self.patience = int(patience)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's score; True when it is the best so far (save the checkpoint then)."""
        if is_better(self.metric, value, self.best):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"metric": self.metric, "patience": self.patience, "best": self.best,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.metric = state["metric"]
        self.patience = int(state["patience"])
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
