"""TensorBoard-style smoothing (debiased EMA) and the live-panel summaries read from run events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import InputError
from core.train.monitor import cv_curve, run_progress, training_curves
from core.train.progress import measured_rate
from core.train.smoothing import ema_smooth


def _tensorboard(values, weight):
    """TensorBoard's own loop (vz_line_chart2 resmoothDataset), transcribed for comparison."""
    last, num_accum, out = 0.0, 0, []
    is_constant = all(v == values[0] for v in values)
    for v in values:
        if is_constant or not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        num_accum += 1
        out.append(last / (1 - weight ** num_accum))
    return out


def test_hand_computed_example():
    # w = 0.6 on [1, 2, 3]:
    #   s1 = 0.4*1 / 0.4 = 1
    #   s2 = (0.24 + 0.8) / (1 - 0.36) = 1.04 / 0.64 = 1.625
    #   s3 = (0.624 + 1.2) / (1 - 0.216) = 1.824 / 0.784 = 2.326530612...
    assert ema_smooth([1, 2, 3], 0.6) == pytest.approx([1.0, 1.625, 1.824 / 0.784])


def test_first_point_is_not_pulled_towards_zero():
    assert ema_smooth([10.0, 10.5], 0.9)[0] == pytest.approx(10.0)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.95, 0.999])
def test_matches_tensorboard_loop(weight):
    values = list(np.random.default_rng(1).normal(size=50).cumsum())
    assert ema_smooth(values, weight) == pytest.approx(_tensorboard(values, weight), rel=1e-9, abs=1e-12)


def test_non_finite_points_pass_through_and_do_not_enter_the_average():
    values = [1.0, float("nan"), 3.0, float("inf"), 2.0]
    got = ema_smooth(values, 0.5)
    want = _tensorboard(values, 0.5)
    assert math.isnan(got[1]) and math.isinf(got[3])
    assert [got[i] for i in (0, 2, 4)] == pytest.approx([want[i] for i in (0, 2, 4)])


def test_constant_and_empty_and_bad_weight():
    assert list(ema_smooth([0.3] * 5, 0.6)) == [0.3] * 5
    assert ema_smooth([], 0.6).size == 0
    with pytest.raises(InputError):
        ema_smooth([1, 2], 1.0)
    with pytest.raises(InputError):
        ema_smooth([1, 2], -0.1)


def _events():
    return [
        {"type": "status", "status": "running", "device": "cpu", "time": 1.0},
        {"type": "extract", "done": 10, "total": 40, "time": 2.0},
        {"type": "extract", "done": 30, "total": 40, "time": 4.0},
        {"type": "extract", "done": 40, "total": 40, "time": 5.0},
        {"type": "step", "split": "train", "epoch": 1, "step": 2, "total_steps": 8, "loss": 1.0, "accuracy": 0.25,
         "images_per_s": 100.0, "eta_s": 6.0, "time": 6.0},
        {"type": "epoch", "split": "train", "epoch": 1, "step": 4, "loss": 0.9, "accuracy": 0.3, "time": 7.0},
        {"type": "epoch", "split": "val", "epoch": 1, "step": 4, "loss": 1.2, "accuracy": 0.5, "auroc": 0.7,
         "time": 7.1},
        {"type": "step", "split": "train", "epoch": 2, "step": 4, "total_steps": 8, "loss": 0.5, "accuracy": None,
         "images_per_s": 120.0, "eta_s": 3.0, "time": 8.0},
        {"type": "epoch", "split": "val", "epoch": 2, "step": 8, "loss": 0.8, "accuracy": 0.75, "time": 9.0},
    ]


def test_progress_phases():
    events = _events()
    extracting = run_progress(events[:3], "running")
    assert extracting.phase == "extracting features"
    assert extracting.fraction == pytest.approx(30 / 40)
    assert extracting.images_per_s == pytest.approx(20 / 2)  # 20 images in 2 s
    assert extracting.eta_s == pytest.approx(10 / 10)
    training = run_progress(events, "running")
    assert training.phase == "training" and training.done == 4 and training.total == 8
    assert training.fraction == pytest.approx(0.5) and training.eta_s == 3.0 and training.images_per_s == 120.0
    assert training.latest_val["accuracy"] == 0.75 and training.device == "cpu" and training.epoch == 2
    assert run_progress([], "queued").phase == "waiting"
    assert run_progress(events, "succeeded").fraction == 1.0
    assert run_progress(events, "succeeded").images_per_s == 120.0  # no extraction stats: the steps' rate
    # Features mode, finished: the backbone's extraction rate (400 images in 8 s), not the head's 120 images/s.
    extracted = events[:3] + [{"type": "extract", "done": 40, "total": 40, "computed": 400, "cached": 0,
                               "seconds": 8.0, "time": 5.0}] + events[4:]
    assert run_progress(extracted, "succeeded").images_per_s == pytest.approx(50.0)
    # The logistic head: all features in, then a status message and no steps.
    fitting = events[:4] + [{"type": "status", "status": "running", "message": "fitting the logistic head",
                             "time": 5.5}]
    assert run_progress(fitting, "running").phase == "fitting the head"
    assert run_progress(events[:4], "running").phase == "extracting features"
    # A stage message is shown until progress records follow it (it stayed under the bar for the whole extraction).
    staged = [{"type": "status", "status": "running", "stage": "first batch", "message": "reading the first batch",
               "time": 1.5}]
    assert run_progress(events[:1] + staged, "running").message == "reading the first batch"
    assert run_progress(events[:1] + staged + events[1:3], "running").message is None
    assert run_progress(fitting, "running").message == "fitting the logistic head"


def test_logistic_head_fit_moves_fold_by_fold_and_draws_its_curve():
    folds = [{"type": "cv_fold", "fold": k, "folds": 5, "eta_s": 2.0 * (6 - k), "time": 5.5 + k,
              "log_loss": [{"C": 0.01, "log_loss": 0.9 - 0.01 * k}, {"C": 0.1, "log_loss": 0.6},
                           {"C": 1.0, "log_loss": 0.8}]} for k in range(1, 6)]
    events = _events()[:4] + folds[:2]
    fitting = run_progress(events, "running")
    assert (fitting.phase, fitting.done, fitting.total) == ("fitting the head", 2, 5)
    assert fitting.fraction == pytest.approx(2 / 6) and fitting.eta_s == 8.0  # five folds, then the final fit
    curve = cv_curve(events)
    assert list(curve.C) == [0.01, 0.1, 1.0] and list(curve.log_loss) == pytest.approx([0.88, 0.6, 0.8])
    assert set(curve.folds_done) == {2} and not curve.chosen.any()
    done = cv_curve(_events()[:4] + folds + [{"type": "cv", "C": 0.1, "log_loss": 0.6, "chosen": True},
                                             {"type": "cv", "C": 1.0, "log_loss": 0.8, "chosen": False}])
    assert list(done.chosen) == [False, True, False] and list(done.log_loss)[0] == pytest.approx(0.85)
    # A run from before fold records: the final per-C records alone.
    old = cv_curve([{"type": "cv", "C": 1.0, "log_loss": 0.8, "chosen": False},
                    {"type": "cv", "C": 0.1, "log_loss": 0.6, "chosen": True}])
    assert list(old.C) == [0.1, 1.0] and list(old.chosen) == [True, False]
    assert cv_curve(_events()).empty


def test_curves_table_smooths_each_series_separately():
    curves = training_curves(_events(), smoothing=0.6)
    train_loss = curves[(curves.split == "train") & (curves.metric == "loss")]
    assert list(train_loss.step) == [2, 4]
    assert list(train_loss.smoothed) == pytest.approx(list(ema_smooth([1.0, 0.5], 0.6)))
    val_acc = curves[(curves.split == "validation") & (curves.metric == "accuracy")]
    assert list(val_acc.value) == [0.5, 0.75]
    # A missing accuracy (None) is left out, not plotted as zero.
    assert len(curves[(curves.split == "train") & (curves.metric == "accuracy")]) == 1
    assert training_curves([], 0.6).empty


def test_rate_comes_from_the_batches_and_the_time_left_counts_down():
    # 32 images done 4 s after the first batch of 32: 8 images/s, 96 left = 12 s, less the time since that batch.
    assert measured_rate((100.0, 32), (104.0, 64), 160) == (8.0, 12.0)
    assert measured_rate((100.0, 32), (104.0, 64), 160, now=110.0) == (8.0, 6.0)
    assert measured_rate((100.0, 32), (104.0, 64), 160, now=200.0) == (8.0, 0.0)
    assert measured_rate((100.0, 32), (100.0, 32), 160) == (None, None)  # one batch: no rate yet
