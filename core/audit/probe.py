"""The linear probe both feature checks use: out-of-fold probabilities of the product's logistic probe.

It is the same probe features-mode training fits (core.train.probe: L2 logistic regression, its strength chosen by
grouped k-fold log loss), so an audit's label issues and domain classifier see the features as a model would.
"""

from __future__ import annotations

import numpy as np

from core.train.probe import DEFAULT_CS, fit_logistic_probe

PROBE_METHOD = ("L2 logistic regression on the backbone features (core.train.probe), strength C from "
                f"{min(DEFAULT_CS):g} to {max(DEFAULT_CS):g} chosen by grouped k-fold log loss; out-of-fold "
                "probabilities at the chosen C")


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0,
                              groups: np.ndarray | None = None) -> np.ndarray:
    """(n, k) probabilities, each row from a model that never saw that row's group (patient; else the row)."""
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    fit = fit_logistic_probe(features, labels, groups, num_classes=int(labels.max()) + 1, seed=seed, folds=folds)
    probs = fit.oof_probabilities
    missing = np.isnan(probs).any(axis=1)
    if missing.any():  # a fold whose training side held one class only: its rows get the class frequencies
        probs[missing] = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
    return probs
