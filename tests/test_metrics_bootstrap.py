"""Patient-level, seeded bootstrap: fast weighted statistics agree with plain resampling."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.data.tasks import get_task
from core.errors import InputError
from core.metrics import (RankedScores, bootstrap_ci, bootstrap_macro_auc, bootstrap_multiclass, patient_groups,
                          resample_patient_counts, resample_weights)

OCT = get_task("oct-kermany")


def data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), truth] += 1.2
    probs = np.exp(logits)
    patients = np.array([f"p{i // 3}" for i in range(n)], dtype=object)
    return truth, probs / probs.sum(axis=1, keepdims=True), patients


def test_images_of_one_patient_are_drawn_together():
    truth, _, patients = data()
    groups, n_groups = patient_groups(patients, truth.size)
    assert n_groups == 80
    for weights in resample_weights(truth.size, patients, n_resamples=30, seed=1):
        per_patient = weights.reshape(weights.shape[0], 80, 3)
        assert (per_patient == per_patient[:, :, :1]).all()    # same multiplicity for all three images
        assert (per_patient[:, :, 0].sum(axis=1) == 80).all()  # 80 patients drawn per replicate


def test_missing_patient_ids_stand_alone():
    groups, n_groups = patient_groups(np.array(["a", None, "a", np.nan, "b"], dtype=object), 5)
    assert n_groups == 4 and groups[0] == groups[2] and len({groups[1], groups[3], groups[4]}) == 3
    with pytest.raises(InputError):
        patient_groups(["a", "b"], 3)


def test_seeded_and_reproducible():
    truth, probs, patients = data()
    first = bootstrap_multiclass(truth, probs, penalty=OCT.penalty(), patient_ids=patients, n_resamples=100, seed=4)
    again = bootstrap_multiclass(truth, probs, penalty=OCT.penalty(), patient_ids=patients, n_resamples=100, seed=4)
    other = bootstrap_multiclass(truth, probs, penalty=OCT.penalty(), patient_ids=patients, n_resamples=100, seed=5)
    assert first == again
    assert first["accuracy"].low != other["accuracy"].low or first["macro_auc"].high != other["macro_auc"].high


def test_fast_statistics_equal_plain_resampling():
    truth, probs, patients = data()
    penalty = OCT.penalty()
    fast = bootstrap_multiclass(truth, probs, penalty=penalty, patient_ids=patients, n_resamples=60, seed=2)
    calls = probs.argmax(axis=1)

    def macro_auc(idx):
        return np.mean([roc_auc_score(truth[idx] == c, probs[idx, c]) for c in range(4)])

    plain = {
        "accuracy": bootstrap_ci(lambda i: (calls[i] == truth[i]).mean(), truth.size, patients, 60, seed=2),
        "weighted_error": bootstrap_ci(lambda i: penalty[truth[i], calls[i]].mean(), truth.size, patients, 60,
                                       seed=2),
        "macro_auc": bootstrap_ci(macro_auc, truth.size, patients, 60, seed=2),
    }
    for name, interval in plain.items():
        assert fast[name].value == pytest.approx(interval.value)
        assert fast[name].low == pytest.approx(interval.low) and fast[name].high == pytest.approx(interval.high)
    assert fast["accuracy"].value == pytest.approx((calls == truth).mean())
    assert "patients" in fast["accuracy"].method


def test_weighted_auc_is_auc_of_the_resampled_cases():
    rng = np.random.default_rng(3)
    truth = rng.random(120) < 0.4
    scores = np.round(rng.normal(size=120) + truth, 1)  # ties between positives and negatives
    ranked = RankedScores(truth, scores)
    weights = next(resample_weights(120, None, n_resamples=5, seed=0))
    aucs = ranked.auc(weights.astype(np.int32))
    for row, auc in zip(weights.astype(int), aucs):
        idx = np.repeat(np.arange(120), row)
        assert auc == pytest.approx(roc_auc_score(truth[idx], scores[idx]))
    # The same with patients (4 images each) drawn as a whole.
    groups = np.arange(120) // 4
    by_patient = RankedScores(truth, scores, groups)
    counts = next(resample_patient_counts(30, n_resamples=5, seed=1))
    for row, auc in zip(counts, by_patient.auc(counts)):
        idx = np.repeat(np.arange(120), row[groups])
        assert auc == pytest.approx(roc_auc_score(truth[idx], scores[idx]))


def test_interval_brackets_the_estimate_with_rare_classes():
    truth, probs, _ = data(n=40)
    truth[:] = 0
    truth[0] = 1  # one case of class 1: many resamples lack it
    truth[1] = 2
    truth[2] = 3
    result = bootstrap_multiclass(truth, probs, n_resamples=50, seed=0)
    for interval in result.values():
        assert interval.low <= interval.value <= interval.high
    assert "images" in result["accuracy"].method
    with pytest.raises(InputError):
        next(resample_weights(10, None, n_resamples=0))


def test_multilabel_macro_auc_equals_plain_resampling():
    rng = np.random.default_rng(6)
    truth = (rng.random((150, 3)) < [0.3, 0.5, 0.2]).astype(int)
    probs = np.clip(0.4 * truth + 0.6 * rng.random((150, 3)), 0, 1)
    patients = np.array([f"p{i // 2}" for i in range(150)], dtype=object)
    fast = bootstrap_macro_auc(truth, probs, patients, n_resamples=40, seed=3)

    def macro(idx):
        return np.mean([roc_auc_score(truth[idx, j], probs[idx, j]) for j in range(3)])

    plain = bootstrap_ci(macro, 150, patients, 40, seed=3)
    assert (fast.value, fast.low, fast.high) == pytest.approx((plain.value, plain.low, plain.high))
