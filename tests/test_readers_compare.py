"""Readers vs truth and vs the model: hand-computed 2x2 tables, operating points, paired tests, export."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from core.data.tasks import get_task
from core.errors import InputError
from core.readers import (BlindingError, compare_readers_to_model, create_study, end_early, export_csv, finish,
                          join_study, lr_table, model_metrics, model_operating_point, model_roc, next_item,
                          paired_comparison, paired_difference_ci, reader_metrics, reader_results, record_answer,
                          roc_points, simulate_readers, weighted_error_table)

OCT = get_task("oct-kermany")
CLASSES = list(OCT.classes)  # CNV, DME, DRUSEN, NORMAL


def _predictions(labels, probs) -> pd.DataFrame:
    probs = np.asarray(probs, dtype=float)
    table = pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(len(labels))], "label": labels,
                          "patient_id": None})
    for j, cls in enumerate(CLASSES):
        table[f"prob_{cls}"] = probs[:, j]
    table["predicted"] = [CLASSES[j] for j in probs.argmax(axis=1)]
    return table


def _one_hot_ish(calls, confidence=0.7):
    """Probabilities putting `confidence` on the called class, the rest spread evenly."""
    rows = []
    for cls in calls:
        row = [(1 - confidence) / 3] * 4
        row[CLASSES.index(cls)] = confidence
        rows.append(row)
    return rows


# Eight cases, two per class. Truth urgent (CNV, DME) = first four.
TRUTH = ["CNV", "CNV", "DME", "DME", "DRUSEN", "DRUSEN", "NORMAL", "NORMAL"]


@pytest.fixture
def predictions():
    model_calls = ["CNV", "DME", "DME", "NORMAL", "DRUSEN", "CNV", "NORMAL", "NORMAL"]
    return _predictions(TRUTH, _one_hot_ish(model_calls))


def _reader(reader_id, labels, ids=None):
    ids = ids if ids is not None else [f"img{i:03d}" for i in range(len(labels))]
    return pd.DataFrame({"reader_id": reader_id, "image_id": ids, "label": labels})


def test_paired_difference_matches_the_published_example():
    # Fagerland, Lydersen & Laake (2017), Cavo et al. 2012 table: Newcombe square-and-add -0.119 to -0.005.
    ci = paired_difference_ci(59, 6, 16, 80)
    assert ci.value == pytest.approx(-10 / 161)
    assert ci.low == pytest.approx(-0.1186, abs=5e-5) and ci.high == pytest.approx(-0.0046, abs=5e-5)
    same = paired_difference_ci(10, 0, 0, 10)
    assert same.value == 0 and same.low < 0 < same.high
    empty = paired_difference_ci(0, 0, 0, 0)
    assert math.isnan(empty.value) and empty.reason


def test_reader_metrics_by_hand(predictions):
    # Reader: CNV->CNV, CNV->DRUSEN (miss), DME->CNV (urgent, right group), DME->DME,
    # DRUSEN->DRUSEN, DRUSEN->DME (false alarm), NORMAL->NORMAL; the last image not graded.
    labels = ["CNV", "DRUSEN", "CNV", "DME", "DRUSEN", "DME", "NORMAL"]
    table = reader_metrics(_reader("dr_a", labels), predictions, OCT)
    row = table.iloc[0]
    assert (row.tp, row.fn, row.fp, row.tn) == (3, 1, 1, 2)
    assert row.sensitivity == pytest.approx(3 / 4) and row.specificity == pytest.approx(2 / 3)
    assert row.sensitivity_low < 0.75 < row.sensitivity_high
    assert row.lr_positive == pytest.approx((3 / 4) / (1 / 3))
    assert row.lr_negative == pytest.approx((1 / 4) / (2 / 3))
    assert row.accuracy == pytest.approx(4 / 7)
    # Kermany penalties: CNV called DRUSEN 2, DME called CNV 1, DRUSEN called DME 1 -> 4 over 7 images.
    assert row.weighted_error == pytest.approx(4 / 7)
    assert row.n_graded == 7 and row.n_in_set == 8 and row.partial and row.coverage == pytest.approx(7 / 8)
    assert row.kind == "reader" and row.view == "urgent referral vs rest"
    # A narrower view counts only its classes' cases (CNV vs NORMAL: images 0, 1, 6).
    narrow = reader_metrics(_reader("dr_a", labels), predictions, OCT, view="CNV vs NORMAL").iloc[0]
    assert (narrow.tp, narrow.fn, narrow.fp, narrow.tn, narrow.n_view) == (1, 1, 0, 1, 3)
    # Another interval method changes the LR interval, not the value.
    koopman = reader_metrics(_reader("dr_a", labels), predictions, OCT, lr_ci="koopman").iloc[0]
    assert koopman.lr_positive == row.lr_positive and koopman.lr_positive_low != row.lr_positive_low


def test_model_operating_points(predictions):
    # Urgent score = P(CNV) + P(DME): 0.8 for CNV/DME calls, 0.2 otherwise.
    point = model_operating_point(predictions, OCT)
    assert (point.tp, point.fn, point.fp, point.tn) == (3, 1, 1, 3)
    strict = model_operating_point(predictions, OCT, threshold=0.9)
    assert strict.tp == 0 and strict.fp == 0
    matched = model_operating_point(predictions, OCT, match_specificity=1.0)
    assert matched.specificity == 1.0
    sensitive = model_operating_point(predictions, OCT, match_sensitivity=1.0)
    assert sensitive.sensitivity == 1.0 and sensitive.specificity == 0.0
    with pytest.raises(InputError, match="not several"):
        model_operating_point(predictions, OCT, threshold=0.5, match_specificity=0.9)
    row = model_metrics(predictions, OCT)
    assert row["reader_id"] == "model" and row["rule"] == "score >= 0.5"
    assert row["accuracy"] == pytest.approx(5 / 8)
    roc = model_roc(predictions, OCT)
    assert roc["auc"].value == pytest.approx(0.75) and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1


def test_paired_comparison_by_hand(predictions):
    labels = ["CNV", "DRUSEN", "CNV", "DME", "DRUSEN", "DME", "NORMAL", "NORMAL"]
    result = paired_comparison(_reader("dr_a", labels), predictions, OCT)
    # Binary calls (urgent?): truth 1111 0000; model 1110 0100; reader 1011 0100.
    assert result["reader_only_correct"] == 1 and result["model_only_correct"] == 1
    assert result["mcnemar_exact_p"] == pytest.approx(stats.binomtest(1, 2, 0.5).pvalue)
    assert result["mcnemar_mid_p"] == pytest.approx(2 * (stats.binom.cdf(1, 2, 0.5) - 0.5 * stats.binom.pmf(1, 2, 0.5)))
    assert result["sensitivity_difference"] == pytest.approx(0.0)
    assert result["specificity_difference"] == pytest.approx(0.0)
    assert result["difference_method"].startswith("model minus reader")
    model_calls = predictions["predicted"].tolist()
    assert result["kappa"] == pytest.approx(cohen_kappa_score(labels, model_calls))
    assert result["n_shared"] == 8 and result["n_view"] == 8
    with pytest.raises(InputError, match="one reader"):
        paired_comparison(pd.concat([_reader("a", labels), _reader("b", labels)]), predictions, OCT)


def test_matching_the_model_to_a_reader():
    rng = np.random.default_rng(0)
    truth = [CLASSES[i % 4] for i in range(400)]
    urgent = np.array([t in ("CNV", "DME") for t in truth])
    score = np.clip(0.5 + 0.25 * np.where(urgent, 1, -1) + rng.normal(0, 0.2, 400), 0.01, 0.99)
    probs = np.column_stack([score / 2, score / 2, (1 - score) / 2, (1 - score) / 2])
    preds = _predictions(truth, probs)
    reader = simulate_readers(preds, OCT, seed=1)
    specialist = reader[reader["reader_id"] == "SIMULATED-specialist"]
    at_spec = paired_comparison(specialist, preds, OCT, match="specificity")
    assert at_spec["model_specificity"] >= at_spec["reader_specificity"] - 1e-12
    assert at_spec["matched_on"] == "specificity" and "(the reader's)" in at_spec["model_rule"]
    at_sens = paired_comparison(specialist, preds, OCT, match="sensitivity")
    assert at_sens["model_sensitivity"] >= at_sens["reader_sensitivity"] - 1e-12
    table = compare_readers_to_model(reader, preds, OCT, match="specificity")
    assert len(table) == 3 and (table["problem"] == "").all()
    assert {"model_sensitivity", "mcnemar_mid_p", "sensitivity_difference_low", "kappa"} <= set(table.columns)
    # The simulated profiles come out near their stated sensitivity and specificity.
    row = table.set_index("reader_id").loc["SIMULATED-cautious-over-referrer"]
    assert abs(row.sensitivity - 0.99) < 0.05 and abs(row.specificity - 0.80) < 0.1
    assert (table["kind"] == "simulated reader").all()


def test_tables_for_the_page(predictions):
    labels = ["CNV", "DRUSEN", "CNV", "DME", "DRUSEN", "DME", "NORMAL", "NORMAL"]
    readings = pd.concat([_reader("dr_a", labels), _reader("dr_b", ["NORMAL"] * 3, ids=["img004", "img005", "img009"])])
    table = compare_readers_to_model(readings, predictions, OCT)
    assert table.set_index("reader_id").loc["dr_a", "problem"] == ""
    # dr_b graded only cases outside the urgent group that the truth knows: no positives, still a row.
    assert "dr_b" in set(table["reader_id"])
    matched = compare_readers_to_model(readings, predictions, OCT, match="sensitivity").set_index("reader_id")
    assert "cannot match the reader's sensitivity" in matched.loc["dr_b", "problem"]
    assert matched.loc["dr_a", "problem"] == "" and matched.loc["dr_a", "model_sensitivity"] >= 0.75
    with pytest.raises(InputError, match="another test set"):
        reader_metrics(_reader("dr_c", ["CNV"], ids=["elsewhere"]), predictions, OCT)
    forest = lr_table(readings, predictions, OCT, lr_ci="koopman")
    assert list(forest["reader_id"].unique()) == ["model", "dr_a", "dr_b"]
    assert set(forest["measure"]) == {"LR+", "LR-"} and forest["method"].str.startswith("Koopman").all()
    # dr_b saw no urgent case: LR+ and LR- are undefined, and each row says why.
    assert forest.loc[forest["reader_id"] == "dr_b", "reason"].str.contains("no cases").all()
    points = roc_points(table)
    ok = points.dropna()
    assert ((ok.fpr_low <= ok.fpr) & (ok.fpr <= ok.fpr_high) & (ok.tpr_low <= ok.tpr) & (ok.tpr <= ok.tpr_high)).all()
    assert points.set_index("reader_id").loc["dr_a", "fpr"] == pytest.approx(1 / 4)
    errors = weighted_error_table(readings, predictions, OCT).set_index("reader_id")
    assert errors.loc["dr_a", "weighted_error"] == pytest.approx(4 / 8)
    # Model: CNV called DME 1, DME called NORMAL 4, DRUSEN called CNV 1.
    assert errors.loc["model", "weighted_error"] == pytest.approx(6 / 8)


def test_export_csv_neutralises_formulas():
    table = pd.DataFrame({"reader_id": ["=HYPERLINK(\"x\")", "ok"], "value": [-1.5, 2.0]})
    back = pd.read_csv(io.BytesIO(export_csv(table)))
    assert back["reader_id"].tolist() == ["'=HYPERLINK(\"x\")", "ok"]
    assert back["value"].tolist() == [-1.5, 2.0]


def test_reader_results_after_finishing(workspace, predictions):
    study = create_study(workspace, "ts", predictions, "oct-kermany", seed=0)
    join_study(workspace, study, "alice")
    join_study(workspace, study, "bob")
    while (item := next_item(workspace, study, "alice")) is not None:
        record_answer(workspace, study, "alice", item.image_id, "CNV")
    with pytest.raises(BlindingError):
        reader_results(workspace, study, "alice", predictions)
    finish(workspace, study, "alice")
    results = reader_results(workspace, study, "alice", predictions)
    assert results["confusion"].to_numpy().sum() == 8
    assert results["confusion"]["CNV"].tolist() == [2, 2, 2, 2]
    assert results["metrics"]["sensitivity"] == 1.0 and results["metrics"]["specificity"] == 0.0
    assert results["paired"]["n_shared"] == 8 and results["model"]["reader_id"] == "model"
    assert results["roc"]["auc"].value == pytest.approx(0.75)
    # bob ends early after one answer: analysed on that case only, stated as partial.
    first = next_item(workspace, study, "bob")
    record_answer(workspace, study, "bob", first.image_id, "NORMAL")
    end_early(workspace, study, "bob")
    partial = reader_results(workspace, study, "bob")
    assert partial["status"] == "ended_early" and partial["metrics"]["n_graded"] == 1
    assert partial["metrics"]["partial"] and partial["paired"] is None
    # carol ends early without answering: no metrics, and a reason instead of an error.
    join_study(workspace, study, "carol")
    end_early(workspace, study, "carol")
    empty = reader_results(workspace, study, "carol", predictions)
    assert empty["metrics"] == {} and empty["problem"] and empty["confusion"].to_numpy().sum() == 0
