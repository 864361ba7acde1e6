"""Refer when unsure, end to end: the band in the model card, the `referred` column of the predictions table, the
referral column of the confusion matrix, the referral cost in the weighted error, and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.predictions import (REFERRED_COLUMN, evaluation_arrays, predictions_frame, read_predictions,
                                    referred_mask)
from core.metrics import headline
from core.metrics.model_operating_point import choose_operating_point
from core.metrics.multiclass import referral_confusion
from core.metrics.penalties import (check_referral_cost, default_referral_cost, image_penalties,
                                    weighted_error_with_referrals)
from core.metrics.selective import ReferralBand, calibrate_band, referral_card
from core.plots.confusion import REFERRED_LABEL, confusion_figure
from core.report import render_html, report_from_predictions

TASK = get_task("oct-kermany")  # CNV, DME, DRUSEN, NORMAL; urgent = CNV, DME


def _probabilities(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and probabilities of a model that is right most of the time, unsure near the middle."""
    truth = rng.integers(0, TASK.num_classes, n)
    logits = rng.normal(0.0, 1.0, (n, TASK.num_classes))
    logits[np.arange(n), truth] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probs


def _band(truth, probs):
    operating = choose_operating_point(TASK, truth, probs)
    card = referral_card(TASK, truth, probs, operating, target_error=0.08)
    return operating, card


def test_training_stores_a_band_and_its_calibration_scores():
    truth, probs = _probabilities(np.random.default_rng(0), 600)
    operating, card = _band(truth, probs)
    band = ReferralBand.from_dict(card["referral_band"])
    assert band is not None and band.low < operating.threshold < band.high and band.threshold == operating.threshold
    assert band.source == operating.source and band.n_calibration == 600
    stored = card["referral_calibration"]
    assert len(stored["truth"]) == len(stored["scores"]) == 600 and set(stored["truth"]) == {0, 1}
    # the stored scores recalibrate to the very same band
    again = calibrate_band(np.asarray(stored["truth"]), np.asarray(stored["scores"]), stored["threshold"], 0.08)
    assert again.low == pytest.approx(band.low) and again.high == pytest.approx(band.high)


def test_too_few_calibration_cases_store_no_band_but_say_why():
    truth, probs = _probabilities(np.random.default_rng(1), 20)
    _, card = _band(truth, probs)
    assert card["referral_band"] is None
    assert "20 calibration cases cannot show an error among calls of at most 8.0%" in \
        card["referral_calibration"]["reason"]
    assert referral_card(TASK, truth, probs, None) == {"referral_band": None, "referral_calibration": None}


class _Dataset:
    def __init__(self, truth):
        self.table = pd.DataFrame({"image_id": [f"i{j}" for j in range(len(truth))],
                                   "label": [TASK.classes[t] for t in truth], "patient_id": None})


def test_predictions_table_gets_a_referred_column_and_old_tables_refer_nothing(tmp_path):
    rng = np.random.default_rng(2)
    truth, probs = _probabilities(rng, 600)
    operating, card = _band(truth, probs)
    band = ReferralBand.from_dict(card["referral_band"])
    frame = predictions_frame(_Dataset(truth), TASK, probs, operating, band)
    plain = predictions_frame(_Dataset(truth), TASK, probs, operating)
    assert REFERRED_COLUMN not in plain.columns and not referred_mask(plain).any()
    scores = probs[:, [TASK.class_index(c) for c in operating.positive]].sum(axis=1)
    expected = (scores >= band.low) & (scores < band.high)
    assert expected.any() and (referred_mask(frame) == expected).all()
    # `predicted` keeps the class call for every row, referred or not
    assert (frame["predicted"] == plain["predicted"]).all()
    from core.infer.predictions import write_predictions

    write_predictions(frame, tmp_path / "p.parquet", {"task": TASK.to_dict()})
    back, _ = read_predictions(tmp_path / "p.parquet")
    assert back[REFERRED_COLUMN].dtype == bool and (referred_mask(back) == expected).all()
    with pytest.raises(InputError, match="'referred' must hold true/false"):
        referred_mask(frame.assign(referred=np.where(expected, "maybe", "no")))


def test_confusion_with_a_referral_column():
    truth = np.array([0, 0, 1, 1, 2, 3])
    calls = np.array([0, 1, 1, 1, 2, 2])
    referred = np.array([False, True, False, True, False, False])
    confusion = referral_confusion(truth, calls, referred, TASK.classes)
    assert confusion.n == 6 and confusion.n_referred == 2
    assert confusion.referred.tolist() == [1, 1, 0, 0]
    assert confusion.calls.counts.sum() == 4 and confusion.calls.counts[0, 1] == 0  # the referred mistake is not one
    fig = confusion_figure(confusion.calls, referred=confusion.referred, clickable=False)
    assert list(fig.data[0].x)[-1] == REFERRED_LABEL and np.asarray(fig.data[0].z).shape == (4, 5)
    assert np.asarray(fig.data[0].z)[0].tolist() == pytest.approx([0.5, 0, 0, 0, 0.5])  # row shares include it
    plain = referral_confusion(truth, calls, None, TASK.classes)
    assert plain.n_referred == 0 and plain.calls.counts.sum() == 6


def test_a_referral_is_priced_per_true_class():
    matrix = TASK.penalty()
    cost = default_referral_cost(matrix)
    off = matrix[~np.eye(4, dtype=bool)]
    assert cost.tolist() == [0.5 * off[off > 0].min()] * 4
    truth, calls = np.array([0, 0, 1, 3]), np.array([3, 0, 1, 0])
    referred = np.array([True, False, False, False])
    per_image = image_penalties(truth, calls, matrix, referred, [2.0, 0, 0, 0])
    assert per_image.tolist() == [2.0, 0.0, 0.0, matrix[3, 0]]
    confusion = referral_confusion(truth, calls, referred, TASK.classes)
    assert weighted_error_with_referrals(confusion.calls.counts, confusion.referred, matrix, [2.0, 0, 0, 0]) == \
        pytest.approx(per_image.mean())
    probs = np.full((4, 4), 0.25)
    priced = headline.weighted_error(truth, probs, calls, matrix, n_resamples=50, referred=referred,
                                     referral_cost=[2.0, 0, 0, 0])
    unpriced = headline.weighted_error(truth, probs, calls, matrix, n_resamples=50)
    assert priced.value == pytest.approx(per_image.mean())
    assert unpriced.value == pytest.approx(matrix[truth, calls].mean()) and priced.value != unpriced.value
    assert priced.low <= priced.value <= priced.high and "bootstrap" in priced.method
    with pytest.raises(InputError, match="one number per true class"):
        check_referral_cost([1.0, 2.0], 4)
    with pytest.raises(InputError, match="finite and non-negative"):
        check_referral_cost([1.0, -1.0, 0, 0], 4)


def _report_inputs():
    rng = np.random.default_rng(3)
    truth, probs = _probabilities(rng, 600)
    operating, card = _band(truth, probs)
    band = ReferralBand.from_dict(card["referral_band"])
    test_truth, test_probs = _probabilities(rng, 400)
    frame = predictions_frame(_Dataset(test_truth), TASK, test_probs, operating, band)
    return frame, band, operating


def test_report_shows_referrals_the_priced_error_and_a_risk_coverage_figure():
    frame, band, operating = _report_inputs()
    report = report_from_predictions(frame, TASK, bootstrap=20, referral_band=band.to_dict(),
                                     model={"operating_point": operating.to_dict()})
    body = report["referrals"]
    referred = referred_mask(frame)
    assert body["included"] and body["n_referred"] == int(referred.sum()) > 0 and body["n"] == len(frame)
    assert body["band"]["low"] == pytest.approx(band.low) and "exchangeable" in body["assumption"]
    assert body["error_among_calls"]["value"] < body["error_overall"]["value"]
    keys = {h["key"]: h for h in report["headline"]}
    assert keys["referred"]["value"] == pytest.approx(referred.mean())
    arrays = evaluation_arrays(frame, TASK)
    assert keys["weighted_error"]["value"] == pytest.approx(image_penalties(
        arrays.truth, arrays.model_calls, TASK.penalty(), referred, report["penalty"]["referral_cost"]).mean())
    assert report["penalty"]["referral_cost"] == pytest.approx(default_referral_cost(TASK.penalty()).tolist())
    html = render_html(report)
    assert "Refer when unsure" in html and 'id="table-referrals"' in html
    assert 'id="figure-risk_coverage"' in html and 'id="figure-referral_confusion"' in html
    assert "referred to a reader" in html  # the penalty matrix's referral column


def test_report_of_a_table_without_referrals_still_works():
    frame, _, _ = _report_inputs()
    report = report_from_predictions(frame.drop(columns=[REFERRED_COLUMN]), TASK, bootstrap=20)
    assert not report["referrals"]["included"] and "no referral band" in report["referrals"]["reason"]
    assert "referred" not in {h["key"] for h in report["headline"]}
    html = render_html(report)
    assert 'id="table-referrals"' not in html and 'id="figure-risk_coverage"' not in html
