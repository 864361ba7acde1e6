"""RunConfig, events.jsonl, validation scores and the sampler: the pieces under the training loops."""

import json
import math

import numpy as np
import pytest

from core.errors import InputError
from core.train import RunConfig, read_events
from core.train.distributed import DistInfo
from core.train.events import EventWriter
from core.train.scores import BestTracker, score_predictions


def test_mode_defaults_and_json_round_trip(tmp_path):
    features = RunConfig(data="x", mode="features")
    assert (features.optimizer, features.lr, features.schedule) == ("adam", 1e-3, "constant")
    finetune = RunConfig(data="x", mode="finetune", task={"name": "dr", "kind": "ordinal", "classes": ["0", "1"]})
    assert finetune.optimizer == "adamw" and finetune.warmup_epochs > 0
    assert finetune.val_metric == "kappa"  # ordinal tasks select on quadratic kappa
    path = finetune.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path) == finetune
    assert json.loads(path.read_text())["mode"] == "finetune"


@pytest.mark.parametrize("field,value,needle", [
    ("mode", "transfer", "mode"),
    ("epochs", 0, "epochs"),
    ("lr", -1.0, "lr"),
    ("fraction", 1.5, "fraction"),
    ("balance", "oversample", "balance"),
    ("unfreeze", "some", "unfreeze"),
    ("device", "tpu", "device"),
])
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(InputError, match=needle):
        RunConfig.from_dict({"data": "x", field: value})


def test_task_given_by_name_is_stored_in_full():
    cfg = RunConfig(data="x", task="dr-grading")
    assert cfg.task["classes"] == ["0", "1", "2", "3", "4"] and cfg.val_metric == "kappa"
    with pytest.raises(InputError, match="unknown task"):
        RunConfig(data="x", task="retina-9000")


def test_unknown_field_and_both_limits_rejected():
    with pytest.raises(InputError, match="unknown field"):
        RunConfig.from_dict({"data": "x", "learning_rate": 0.1})
    with pytest.raises(InputError, match="per_class/fraction"):
        RunConfig(data="x", per_class=10, fraction=0.5)


def test_events_reader_skips_a_half_written_line(tmp_path):
    with EventWriter(tmp_path) as events:
        events.write("step", loss=0.5, accuracy=math.nan)
        events.write("epoch", split="val", auroc=0.9)
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"type": "step", "loss": 0.')  # the writer is mid-line
    records = read_events(tmp_path)
    assert [r["type"] for r in records] == ["step", "epoch"]
    assert records[0]["accuracy"] is None  # NaN is stored as null: every line stays valid JSON
    assert read_events(tmp_path, "epoch")[0]["auroc"] == 0.9
    assert read_events(tmp_path / "missing") == []


def test_scores_match_hand_computed_values():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    targets = np.array([0, 1, 0, 1])
    s = score_predictions("binary", probs, targets, loss=0.3)
    assert s["accuracy"] == 0.5
    # Positive scores 0.6, 0.4 vs negatives 0.1, 0.7: pairs won 0.6>0.1, 0.4>0.1 -> 2 of 4.
    assert s["auroc"] == pytest.approx(0.5)
    ordinal = score_predictions("ordinal", np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]))
    assert ordinal["accuracy"] == 0.75 and 0 < ordinal["kappa"] < 1
    single = score_predictions("binary", probs[:2], np.array([1, 1]))
    assert math.isnan(single["auroc"])  # undefined with one class, never a crash


def test_multilabel_scores_per_label():
    probs = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6], [0.2, 0.1]])
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    s = score_predictions("multilabel", probs, truth)
    assert s["accuracy"] == 1.0 and s["auroc"] == 1.0


def test_best_tracker_selects_and_stops():
    t = BestTracker("auroc", patience=2)
    assert t.update(0.7, 1) and not t.update(0.6, 2) and not t.should_stop
    assert not t.update(0.65, 3) and t.should_stop and t.best_epoch == 1
    loss = BestTracker("loss")
    assert loss.update(1.0, 1) and loss.update(0.5, 2) and not loss.update(0.7, 3)


def test_epoch_sampler_splits_the_single_process_order_between_ranks():
    from core.train.recipe import EpochSampler

    single = EpochSampler(12, seed=3)
    single.set_epoch(2)
    ranks = [EpochSampler(12, seed=3, dist=DistInfo(r, 2)) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    full = single.order().tolist()
    assert ranks[0].order().tolist() == full[0::2] and ranks[1].order().tolist() == full[1::2]
    single.set_epoch(3)
    assert single.order().tolist() != full  # a new order each epoch


def test_balanced_sampler_draws_classes_equally():
    from core.train.recipe import EpochSampler, balanced_weights

    targets = np.array([0] * 90 + [1] * 10)
    sampler = EpochSampler(100, seed=0, weights=balanced_weights(targets, 2, "multiclass"))
    drawn = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn.append(targets[sampler.order().numpy()])
    drawn = np.concatenate(drawn)
    assert abs(drawn.mean() - 0.5) < 0.05  # the minority class is drawn about half the time, not 10%


def test_class_weighted_loss_weights_minority_more():
    import torch

    from core.train.recipe import build_loss

    loss = build_loss("multiclass", np.array([0] * 30 + [1] * 10), 2, "weights", torch.device("cpu"))
    assert loss.weight.tolist() == pytest.approx([40 / 60, 40 / 20])
    ml = build_loss("multilabel", np.array([[1, 0], [1, 1], [1, 0], [0, 0]]), 2, "weights", torch.device("cpu"))
    assert ml.pos_weight.tolist() == pytest.approx([1 / 3, 3.0])
