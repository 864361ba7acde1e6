"""The evaluation pages' metric helpers, checked against the core metrics and reference libraries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.weightstats import DescrStatsW
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from sklearn.utils.class_weight import compute_class_weight

from core.data.tasks import BinaryView, get_task, task_from_dict
from core.errors import InputError
from core.infer.predictions import evaluation_arrays
from core.metrics import (compare_correctness, compare_decision_rules, delong_test, diagnostic_metrics,
                          multiclass_metrics, weighted_error)
from core.metrics.dashboard import (available_views, call_summary, calls_at_threshold, cases_in_cell,
                                    class_aucs, class_balance_effect, class_distribution, class_table,
                                    covers_all_classes, label_counts, largest_error_cell,
                                    mean_interval, multilabel_threshold_table, precision_recall,
                                    predictive_value_curve, urgent_view, view_scores)
from core.metrics.penalty_effect import check_penalty_entries, penalty_effect, penalty_table
from core.metrics.run_compare import (align_runs, data_size_label, learning_curve, pairwise_tests,
                                      run_summary_table)
from tests._evaluation_data import predictions_table, synthetic_probabilities, synthetic_truth

OCT = get_task("oct-kermany")


def _arrays(task=OCT, n=400, separation=1.5, seed=0):
    truth = synthetic_truth(task, n, seed)
    probs = synthetic_probabilities(task, truth, separation, seed + 1)
    return evaluation_arrays(predictions_table(task, truth, probs), task)


def test_evaluation_arrays_parse_the_predictions_table():
    arrays = _arrays()
    assert arrays.n == 400 and arrays.probabilities.shape == (400, 4)
    assert np.array_equal(arrays.model_calls, arrays.probabilities.argmax(axis=1))
    assert arrays.n_patients == 200 and arrays.patient_codes.max() == 199
    frame = predictions_table(OCT, np.array([0, 1]), np.full((2, 4), 0.25)).drop(columns=["prob_DME"])
    with pytest.raises(InputError, match="prob_DME"):
        evaluation_arrays(frame, OCT)


def test_views_include_the_referral_view_and_one_vs_rest_without_repeats():
    views = available_views(OCT)
    names = [v.name for v in views]
    assert names[0] == "urgent referral vs rest" and "NORMAL vs rest" in names
    assert len(set(names)) == len(names)
    assert urgent_view(OCT).positive == ("CNV", "DME")
    assert covers_all_classes(views[0], OCT) and not covers_all_classes(OCT.view("CNV vs NORMAL"), OCT)
    binary = task_from_dict({"name": "b", "kind": "binary", "classes": ["neg", "pos"], "binary_views": [
        {"name": "pos vs neg", "positive": ["pos"], "negative": ["neg"]}]})
    # "pos vs rest" repeats the declared view, so only "neg vs rest" is added.
    assert [v.name for v in available_views(binary)] == ["pos vs neg", "neg vs rest"]


@settings(max_examples=40, deadline=None)
@given(threshold=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_threshold_calls_collapse_to_the_operating_point_counts(threshold, seed):
    arrays = _arrays(n=120, seed=seed)
    view = urgent_view(OCT)
    calls = calls_at_threshold(arrays.probabilities, OCT.classes, view, threshold)
    point = view_scores(arrays, view).at_threshold(threshold)
    urgent_truth = np.isin(arrays.truth, [0, 1])
    urgent_call = np.isin(calls, [0, 1])
    assert (point.tp, point.fp) == (int((urgent_truth & urgent_call).sum()), int((~urgent_truth & urgent_call).sum()))
    # Within a side, the call is the most probable class of that side.
    on_urgent = urgent_call
    assert np.array_equal(calls[on_urgent], arrays.probabilities[on_urgent][:, :2].argmax(axis=1))


def test_threshold_calls_need_a_view_that_covers_every_class():
    with pytest.raises(InputError, match="leaves some classes out"):
        calls_at_threshold(np.full((2, 4), 0.25), OCT.classes, OCT.view("CNV vs NORMAL"), 0.5)


def test_call_summary_and_class_table_agree_with_multiclass_metrics():
    arrays = _arrays()
    summary = call_summary(arrays.truth, arrays.model_calls, OCT.classes, OCT.penalty(),
                           probabilities=arrays.probabilities)
    reference = multiclass_metrics(arrays.truth, arrays.probabilities, OCT.classes)
    assert summary.accuracy == reference.accuracy
    assert summary.balanced_accuracy == pytest.approx(reference.balanced_accuracy)
    assert summary.weighted_error.value == pytest.approx(weighted_error(reference.confusion.counts, OCT.penalty()))
    aucs = class_aucs(arrays)
    table = class_table(summary.confusion, aucs)
    for row, ref in zip(table.itertuples(), reference.per_class):
        assert row.sensitivity == pytest.approx(ref.rates.sensitivity.value)
        assert row.npv_low == pytest.approx(ref.rates.npv.low)
        assert row.auc == pytest.approx(ref.auc.value) and row.support == ref.n_cases


def test_mean_interval_matches_statsmodels_ols_with_and_without_clusters():
    rng = np.random.default_rng(3)
    values = rng.choice([0.0, 1.0, 4.0], size=300, p=[0.7, 0.2, 0.1])
    groups = np.repeat(np.arange(100), 3)
    plain = mean_interval(values)
    assert (plain.low, plain.high) == pytest.approx(DescrStatsW(values).zconfint_mean(alpha=0.05), rel=1e-9)
    clustered = mean_interval(values, groups)
    robust = sm.OLS(values, np.ones_like(values)).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert (clustered.low, clustered.high) == pytest.approx(tuple(robust.conf_int(alpha=0.05)[0]), rel=1e-6)
    assert mean_interval(np.zeros(5), lower=0.0).low == 0.0
    assert np.isnan(mean_interval([]).value)


def test_precision_recall_matches_sklearn_average_precision():
    arrays = _arrays(n=600)
    scores = view_scores(arrays, urgent_view(OCT))
    pr = precision_recall(scores)
    assert pr.average_precision == pytest.approx(average_precision_score(scores.truth, scores.scores))
    assert pr.recall[0] == 0 and pr.recall[-1] == 1
    assert pr.prevalence == pytest.approx(scores.truth.mean())


def test_predictive_values_at_the_test_prevalence_equal_the_observed_ones():
    metrics = diagnostic_metrics(45, 15, 5, 135)
    curve = predictive_value_curve(metrics, [0.25, 0.01])
    assert curve.loc[0, "ppv"] == pytest.approx(45 / 60) and curve.loc[0, "npv"] == pytest.approx(135 / 140)
    assert curve.loc[1, "ppv"] < curve.loc[0, "ppv"] < 1
    assert curve.loc[1, "ppv_low"] <= curve.loc[1, "ppv"] <= curve.loc[1, "ppv_high"]


def test_class_distribution_and_balance_effect():
    table = class_distribution(["A", "B"], {"train": {"A": 30, "B": 10}, "test": {"A": 5, "B": 5}})
    assert table.loc[(table.split == "train") & (table["class"] == "A"), "share"].item() == pytest.approx(0.75)
    counts = {"CNV": 37205, "DME": 11348, "DRUSEN": 8616, "NORMAL": 26315}
    weights = class_balance_effect(counts, "weights")
    labels = np.repeat(np.arange(4), list(counts.values()))
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    assert weights["loss_weight"].to_numpy() == pytest.approx(expected)
    assert weights["share_of_training_signal"].to_numpy() == pytest.approx([0.25] * 4)
    sampler = class_balance_effect(counts, "sampler")
    assert sampler["loss_weight"].tolist() == [1.0] * 4 and sampler["share_of_training_signal"].sum() == 1
    none = class_balance_effect(counts, "none")
    assert none["share_of_training_signal"].to_numpy() == pytest.approx(none["share_of_images"].to_numpy())
    with pytest.raises(InputError):
        class_balance_effect(counts, "oversample")
    assert label_counts(np.array([0, 0, 2]), ["A", "B", "C"]) == {"A": 2, "B": 0, "C": 1}


def test_cells_and_cases():
    arrays = _arrays()
    summary = call_summary(arrays.truth, arrays.model_calls, OCT.classes, OCT.penalty(),
                           probabilities=arrays.probabilities)
    i, j = largest_error_cell(summary.confusion)
    off = summary.confusion.counts.copy()
    np.fill_diagonal(off, -1)
    assert off[i, j] == off.max() and i != j
    cases = cases_in_cell(arrays, arrays.model_calls, i, j)
    assert len(cases) == summary.confusion.counts[i, j]
    assert (arrays.truth[cases["row"]] == i).all() and (arrays.model_calls[cases["row"]] == j).all()
    assert cases["p_called_class"].is_monotonic_decreasing


def test_multilabel_threshold_table():
    task = get_task("fundus-multilabel")
    arrays = _arrays(task, n=500)
    table = multilabel_threshold_table(arrays, 0.5, class_aucs(arrays))
    truth, called = arrays.truth[:, 0].astype(bool), arrays.probabilities[:, 0] >= 0.5
    assert table.loc[0, "sensitivity"] == pytest.approx((truth & called).sum() / truth.sum())
    assert table.loc[0, "positives"] == truth.sum() and len(table) == task.num_classes
    scores = view_scores(arrays, BinaryView("DR", ("DR",), ()))
    assert scores.n_positive == truth.sum()


def test_penalty_entries_name_the_bad_cell_and_warn_about_the_diagonal():
    classes = ["A", "B"]
    ok = check_penalty_entries(pd.DataFrame([[0, 1], [4, 0]]), classes)
    assert ok.matrix.tolist() == [[0, 1], [4, 0]] and ok.warnings == ()
    with pytest.raises(InputError, match="row B \\(true\\), column A \\(called\\).*negative"):
        check_penalty_entries(pd.DataFrame([[0, 1], [-1, 0]]), classes)
    with pytest.raises(InputError, match="is empty"):
        check_penalty_entries(pd.DataFrame([[0, None], [1, 0]]), classes)
    with pytest.raises(InputError, match="not a number"):
        check_penalty_entries(pd.DataFrame([[0, "x"], [1, 0]]), classes)
    with pytest.raises(InputError, match="2x2"):
        check_penalty_entries(pd.DataFrame([[0, 1, 1]]), classes)
    warned = check_penalty_entries(pd.DataFrame([[1, 1], [1, 0]]), classes)
    assert any("non-zero" in w for w in warned.warnings)
    with pytest.raises(InputError, match="is all zeros"):
        check_penalty_entries(pd.DataFrame([[0, 0], [0, 0]]), classes)


def test_penalty_effect_and_table():
    arrays = _arrays(n=500)
    effect = penalty_effect(arrays.truth, arrays.probabilities, OCT.penalty(), arrays.patient_codes)
    reference = compare_decision_rules(arrays.truth, arrays.probabilities, OCT.penalty())
    assert effect.argmax_weighted_error.value == pytest.approx(reference.argmax_weighted_error)
    assert effect.min_penalty_weighted_error.value == pytest.approx(reference.min_penalty_weighted_error)
    assert effect.argmax_cost == pytest.approx(1000 * reference.argmax_weighted_error)
    assert effect.count_change.sum() == 0
    assert (effect.count_change.sum(axis=1) == 0).all()  # calls move between columns, images stay in their row
    reader = {"r1": {"reader": np.array([[10, 0, 0, 2], [0, 9, 0, 3], [0, 0, 8, 0], [1, 0, 0, 11]]),
                     "model": np.eye(4, dtype=int) * 11, "images": 44}}
    table = penalty_table(effect, reader)
    assert table["name"].tolist()[:2] == ["model (most probable class)", "model (penalty-minimising rule)"]
    row = table.set_index("name").loc["r1"]
    assert row["weighted_error"] == pytest.approx(weighted_error(reader["r1"]["reader"], OCT.penalty()))
    assert row["cost_per_1000"] == pytest.approx(1000 * row["weighted_error"]) and row["model_same_images"] == 0


def test_align_runs_summary_and_pairwise_tests():
    truth = synthetic_truth(OCT, 300, 0)
    frames = {name: predictions_table(OCT, truth, synthetic_probabilities(OCT, truth, sep, seed))
              for name, sep, seed in (("full", 2.0, 1), ("limited", 0.7, 2))}
    frames["limited"] = frames["limited"].iloc[10:]  # one run lacks ten images
    runs = {name: evaluation_arrays(frame, OCT) for name, frame in frames.items()}
    aligned = align_runs(runs)
    assert aligned.truth.size == 290 and aligned.dropped == {"full": 10, "limited": 0}
    view = urgent_view(OCT)
    summary = run_summary_table(aligned, view, OCT.penalty())
    assert summary["run"].tolist() == ["full", "limited"]
    assert summary.loc[0, "view_auc"] > summary.loc[1, "view_auc"]
    pairs = pairwise_tests(aligned, view)
    urgent = np.isin(aligned.truth, [0, 1])
    scores = {n: aligned.probabilities[n][:, :2].sum(axis=1) for n in aligned.names}
    delong = delong_test(urgent, scores["full"], scores["limited"])
    assert pairs.loc[0, "delong_p"] == pytest.approx(delong.p_value)
    mcnemar = compare_correctness(aligned.truth, aligned.calls["full"], aligned.calls["limited"])
    assert (pairs.loc[0, "only_a_right"], pairs.loc[0, "mcnemar_p"]) == (mcnemar.b, pytest.approx(mcnemar.p_value))
    curve = learning_curve(summary, {"full": 4000, "limited": 400}, "accuracy")
    assert curve["training_images"].tolist() == [400, 4000]
    with pytest.raises(InputError):
        learning_curve(summary, {}, "kappa")


def test_align_runs_refuses_different_truth():
    truth = synthetic_truth(OCT, 50, 0)
    a = predictions_table(OCT, truth, synthetic_probabilities(OCT, truth, 1.0, 1))
    b = a.copy()
    b.loc[0, "label"] = OCT.classes[(truth[0] + 1) % 4]
    with pytest.raises(InputError, match="different true label"):
        align_runs({"a": evaluation_arrays(a, OCT), "b": evaluation_arrays(b, OCT)})


def test_data_size_labels():
    assert data_size_label(1000, None) == "limited: 1,000 per class"
    assert data_size_label(None, 0.1).startswith("TL10 ")
    assert data_size_label(None, None) == "full training data"
    assert data_size_label(None, 1.0) == "full training data"
