"""Likely label errors, for a person to review: cleanlab's confident learning on out-of-fold probabilities."""

from __future__ import annotations

import numpy as np

from core.audit.probe import PROBE_METHOD, out_of_fold_probabilities
from core.data.dataset import Dataset
from core.data.splits import patient_groups

MAX_CASES = 100
CV_FOLDS = 5
METHOD = ("cleanlab.filter.find_label_issues (confident learning), ranked by self-confidence, on out-of-fold "
          f"probabilities (patient-grouped k-fold) of a {PROBE_METHOD}, on the run's backbone features")
REVIEW_NOTE = "cases for a person to review; no label is changed automatically"


def label_issues(ds: Dataset, features: np.ndarray, run_id: str, max_cases: int = MAX_CASES) -> dict:
    """The images whose given label their out-of-fold probabilities contradict most, most suspicious first."""
    from cleanlab.filter import find_label_issues

    base = {"run": run_id, "method": METHOD, "note": REVIEW_NOTE, "n_flagged": 0, "cases": []}
    if ds.is_multilabel:
        return {**base, "note": "not computed: label issues are checked for single-label tasks only"}
    given = ds.label_indices()
    present = np.unique(given)  # classes with no image here get no probability column
    labels = np.searchsorted(present, given)
    folds = min(CV_FOLDS, int(np.bincount(labels).min())) if len(present) > 1 else 0
    if folds < 2:
        return {**base, "note": "not computed: needs at least two classes with two images each"}
    probs = out_of_fold_probabilities(features, labels, folds, groups=patient_groups(ds).to_numpy())
    # n_jobs=1: cleanlab's default multiprocessing forks this (threaded) process, which can deadlock.
    ranked = find_label_issues(labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence",
                               n_jobs=1)
    names = np.asarray(ds.classes, dtype=object)[present]
    ids = ds.table["image_id"].to_numpy()
    cases = [{"image_id": str(ids[i]), "given_label": str(names[labels[i]]),
              "suggested_label": str(names[int(probs[i].argmax())]),
              "given_label_probability": float(probs[i, labels[i]]),
              "suggested_label_probability": float(probs[i].max())} for i in ranked[:max_cases]]
    return {**base, "folds": folds, "n_flagged": int(len(ranked)), "cases": cases}
