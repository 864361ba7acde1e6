"""Multi-class summaries, referral tiers, calibration, imbalance, multi-label and ordinal helpers."""

import math

import numpy as np
import pytest
from sklearn.metrics import (balanced_accuracy_score, brier_score_loss, confusion_matrix as sk_confusion, log_loss,
                             roc_auc_score)

from core.data.tasks import get_task
from core.errors import InputError
from core.metrics import (binary_view_data, brier_score, confusion_matrix, diagnostic_metrics, multiclass_metrics,
                          multilabel_metrics, ordinal_agreement, predictive_values_at_prevalence,
                          prevalence_by_split, referral_score, reliability_bins, tier_confusion,
                          top_label_reliability)

OCT = get_task("oct-kermany")


def synthetic(n=400, k=4, seed=0, strength=1.5):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += strength
    probs = np.exp(logits)
    return truth, probs / probs.sum(axis=1, keepdims=True)


def test_multiclass_summary_matches_sklearn():
    truth, probs = synthetic()
    summary = multiclass_metrics(truth, probs, OCT.classes)
    calls = probs.argmax(axis=1)
    assert (summary.confusion.counts == sk_confusion(truth, calls, labels=range(4))).all()
    assert summary.accuracy.value == pytest.approx((calls == truth).mean())
    assert summary.balanced_accuracy == pytest.approx(balanced_accuracy_score(truth, calls))
    assert summary.cross_entropy == pytest.approx(log_loss(truth, probs, labels=range(4)))
    assert summary.macro_auc == pytest.approx(roc_auc_score(truth, probs, multi_class="ovr", average="macro"))
    assert summary.weighted_auc == pytest.approx(roc_auc_score(truth, probs, multi_class="ovr", average="weighted"))
    cnv = summary.per_class[0]
    tp = int(((calls == 0) & (truth == 0)).sum())
    assert cnv.rates.tp == tp and cnv.rates.sensitivity.value == pytest.approx(tp / (truth == 0).sum())
    assert cnv.auc.value == pytest.approx(roc_auc_score(truth == 0, probs[:, 0]))
    assert np.allclose(summary.confusion.row_normalised.sum(axis=1), 1)
    assert np.allclose(summary.confusion.column_normalised.sum(axis=0), 1)


def test_class_names_and_bad_probabilities():
    truth = np.array(["CNV", "DME", "NORMAL"])
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    summary = multiclass_metrics(truth, probs, OCT.classes)
    assert summary.accuracy.value == 1.0 and math.isnan(summary.per_class[2].auc.value)
    with pytest.raises(InputError, match="sum to 1"):
        multiclass_metrics(truth, probs * 0.5, OCT.classes)
    with pytest.raises(InputError, match="not classes"):
        multiclass_metrics(np.array(["CNV", "DME", "GLAUCOMA"]), probs, OCT.classes)
    cm = confusion_matrix(["CNV", "DME"], ["DME", "DME"], OCT.classes)
    assert cm.counts[0, 1] == 1 and cm.counts[1, 1] == 1 and math.isnan(cm.row_normalised[3, 0])


def test_referral_score_and_tiers():
    probs = np.array([[0.2, 0.3, 0.4, 0.1], [0.05, 0.05, 0.1, 0.8]])
    assert referral_score(probs, OCT.classes, OCT.urgent_classes()) == pytest.approx([0.5, 0.1])
    truth = np.array([0, 1, 2, 3, 3])   # CNV, DME, DRUSEN, NORMAL, NORMAL
    calls = np.array([1, 3, 2, 0, 3])   # DME, NORMAL, DRUSEN, CNV, NORMAL
    tiers = tier_confusion(truth, calls, OCT)
    assert tiers.classes == ("urgent", "routine", "observation")
    assert tiers.counts.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(InputError):
        referral_score(probs, OCT.classes, ())


def test_binary_view_renormalises_narrow_views():
    truth = np.array([0, 3, 1, 2])
    probs = np.array([[0.6, 0.1, 0.1, 0.2], [0.1, 0.1, 0.2, 0.6], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]])
    urgent = binary_view_data(truth, probs, OCT.classes, OCT.default_view())
    assert urgent.rows.tolist() == [0, 1, 2, 3] and urgent.scores == pytest.approx([0.7, 0.2, 0.8, 0.2])
    cnv_vs_normal = binary_view_data(truth, probs, OCT.classes, OCT.view("CNV vs NORMAL"), y_pred=probs.argmax(1))
    assert cnv_vs_normal.rows.tolist() == [0, 1] and cnv_vs_normal.truth.tolist() == [True, False]
    assert cnv_vs_normal.scores == pytest.approx([0.75, 0.1 / 0.7]) and cnv_vs_normal.calls.tolist() == [True, False]


def test_reliability_bins_and_ece_hand_computed():
    predicted = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95, 1.0])
    outcome = np.array([0, 0, 1, 1, 1, 1, 0, 1])
    bins = reliability_bins(predicted, outcome, n_bins=10)
    assert bins.counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 5]
    assert bins.observed[1] == 0.5 and math.isnan(bins.observed[2])
    gaps = [abs(0 - 0.05), abs(0.5 - 0.15), abs(0.8 - 0.96)]
    assert bins.ece == pytest.approx((1 * gaps[0] + 2 * gaps[1] + 5 * gaps[2]) / 8)
    assert bins.mce == pytest.approx(max(gaps))
    with pytest.raises(InputError):
        reliability_bins([1.5], [1])


def test_brier_scores_match_definitions():
    truth, probs = synthetic(n=200)
    onehot = np.eye(4)[truth]
    assert brier_score(truth, probs) == pytest.approx(((probs - onehot) ** 2).sum(axis=1).mean())
    binary = np.array([0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.6, 0.3])
    assert brier_score(binary, scores) == pytest.approx(brier_score_loss(binary, scores))
    top = top_label_reliability(truth, probs)
    assert top.counts.sum() == 200


def test_predictive_values_at_prevalence():
    m = diagnostic_metrics(40, 10, 10, 90)  # sensitivity 0.8, specificity 0.9
    ppv, npv = predictive_values_at_prevalence(m, 0.1)
    assert ppv.value == pytest.approx(0.8 * 0.1 / (0.8 * 0.1 + 0.1 * 0.9))
    assert npv.value == pytest.approx(0.9 * 0.9 / (0.9 * 0.9 + 0.2 * 0.1))
    assert ppv.low < ppv.value < ppv.high and npv.low < npv.value < npv.high
    # At the table's own prevalence, Bayes gives back the table's PPV.
    same_ppv, _ = predictive_values_at_prevalence(m, m.prevalence)
    assert same_ppv.value == pytest.approx(m.ppv.value)
    perfect = diagnostic_metrics(40, 0, 10, 100, lr_ci="koopman")
    assert predictive_values_at_prevalence(perfect, 0.01)[0].value == 1.0
    with pytest.raises(InputError):
        predictive_values_at_prevalence(m, 1.0)


def test_prevalence_by_split():
    table = prevalence_by_split(["CNV", "CNV", "NORMAL", "DME"], ["train", "test", "test", None], OCT.classes)
    assert table.loc["test", "CNV"] == 0.5 and table.loc["test", "n"] == 2
    assert table.loc["(none)", "DME"] == 1.0 and list(table.columns) == [*OCT.classes, "n"]


def test_multilabel_per_label_auc():
    rng = np.random.default_rng(2)
    truth = (rng.random((300, 3)) < [0.2, 0.5, 0.0]).astype(int)
    probs = np.clip(truth * 0.4 + rng.random((300, 3)) * 0.6, 0, 1)
    summary = multilabel_metrics(truth, probs, ["DR", "ARMD", "MH"])
    assert summary.per_label["DR"].value == pytest.approx(roc_auc_score(truth[:, 0], probs[:, 0]))
    assert math.isnan(summary.per_label["MH"].value) and summary.per_label["MH"].reason
    assert summary.macro_auc == pytest.approx(np.mean([summary.per_label[x].value for x in ("DR", "ARMD")]))


def test_ordinal_agreement():
    truth = np.array([0, 1, 2, 3, 4, 2, 2, 0])
    calls = np.array([0, 2, 2, 1, 4, 3, 2, 1])
    result = ordinal_agreement(truth, calls, ["0", "1", "2", "3", "4"])
    assert result.exact_agreement == pytest.approx(4 / 8) and result.within_one_grade == pytest.approx(7 / 8)
    assert result.mean_absolute_error == pytest.approx((0 + 1 + 0 + 2 + 0 + 1 + 0 + 1) / 8)
    adjacent = {(t, c): n for t, c, n in result.adjacent_confusion}
    assert adjacent[("1", "2")] == 1 and adjacent[("2", "3")] == 1 and adjacent[("0", "1")] == 1
    from sklearn.metrics import cohen_kappa_score
    assert result.quadratic_kappa.value == pytest.approx(cohen_kappa_score(truth, calls, weights="quadratic"))
