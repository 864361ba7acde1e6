"""Label-free adaptation to a site (core.infer.recalibrate.adapt_unlabelled) and derived runs, on a tiny trained model.

The source model is trained on 30 'LESION' and 10 'CLEAR' images (training prior 0.75 / 0.25); the sites hold the
same patterns at another prevalence, so the true site prior is known. The tiny random-init backbone ranks the classes
but its head is far from sharp, so the fixture Platt-scales the trained head on its own training images (EM assumes
probabilities calibrated at the training prior, which Platt scaling on the training images gives)."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from core.errors import InputError
from core.infer import predict
from core.metrics.prior_shift import adjust_threshold, adjust_to_prior
from core.train import RunConfig, run_training
from tests.train_fixtures import TINY, make_kermany_folder, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")

CLASSES = ("CLEAR", "LESION")
URGENT = ("LESION",)


def _share(counts: dict, test_per_class: int) -> float:
    total = {c: n + test_per_class for c, n in counts.items()}
    return sum(total[c] for c in URGENT) / sum(total.values())


LOW = {"CLEAR": 40, "LESION": 8}   # LESION share 9/50 = 0.18
HIGH = {"CLEAR": 8, "LESION": 40}  # LESION share 41/50 = 0.82


def _platt_scale(ws, run_id, data):
    """Refit the trained head's logit difference to the training labels (Platt scaling), in place."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from core.models import get_head, load_checkpoint, save_checkpoint

    folder = ws.runs_dir / run_id / "checkpoint"
    frame = predict(run_id, data, ws, split="train")
    p = frame["prob_LESION"].to_numpy().astype(float)
    d = np.log(p / (1 - p))[:, None]
    fit = LogisticRegression(C=1e6, max_iter=10000).fit(d, (frame["label"] == "LESION").to_numpy())
    a, c = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    model, card = load_checkpoint(folder / "model.safetensors")
    last = [m for m in get_head(model).modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        w, b = last.weight.clone(), last.bias.clone()
        last.weight[0] = 0.0
        last.weight[1] = a * (w[1] - w[0])
        last.bias[0] = 0.0
        last.bias[1] = a * (b[1] - b[0]) + c
    save_checkpoint(model, folder, card)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from core.store import Workspace

    root = tmp_path_factory.mktemp("adapt")
    ws = Workspace.open(root / "workspace")
    data = make_kermany_folder(root / "train", classes=CLASSES, counts={"CLEAR": 10, "LESION": 30},
                               test_per_class=1)  # the test split is not trained on
    cfg = RunConfig(data=str(data), mode="features", binary="LESION:CLEAR",
                    **{**TINY, "image_size": 64, "head_fit": "adam", "epochs": 200, "lr": 0.3, "weight_decay": 0.0,
                       "patience": 1000})
    run_id = ws.create_run(config={**cfg.to_dict(), "task": "auto"})
    run_training(cfg, ws.runs_dir / run_id, ws, log=lambda *_: None)
    ws.update_run(run_id, status="succeeded")
    _platt_scale(ws, run_id, data)
    low = make_kermany_folder(root / "low", classes=CLASSES, counts=LOW, test_per_class=1, seed=1)
    high = make_kermany_folder(root / "high", classes=CLASSES, counts=HIGH, test_per_class=1, seed=2)
    return {"ws": ws, "run_id": run_id, "root": root, "low": low, "high": high}


def _tree_digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _card(ws, run_id):
    return json.loads((ws.runs_dir / run_id / "checkpoint" / "model_card.json").read_text())


def test_training_stores_the_prior_its_probabilities_are_calibrated_to(source):
    prior = _card(source["ws"], source["run_id"])["training_prior"]
    assert prior["classes"] == ["CLEAR", "LESION"] and prior["counts"] == [8, 24]  # the adam head keeps 8 of 40 for validation
    assert prior["prior"] == pytest.approx([0.25, 0.75]) and "class shares" in prior["basis"]


def test_adaptation_writes_a_new_run_and_never_edits_the_source(source):
    from core.infer.recalibrate import adapt_unlabelled

    ws, run_id = source["ws"], source["run_id"]
    predict(run_id, source["low"], ws)  # the source's table on the site: adaptation reuses it
    before_files, before_row = _tree_digest(ws.runs_dir / run_id), ws.get_run(run_id)
    result = adapt_unlabelled(run_id, source["low"], ws)
    assert _tree_digest(ws.runs_dir / run_id) == before_files and ws.get_run(run_id) == before_row

    new = ws.get_run(result.run_id)
    assert new["status"] == "succeeded" and result.source_run_id == run_id != result.run_id
    assert new["task"] == before_row["task"] == "custom-train"  # a name, not a dict's text
    assert result.run_id.count("run-") == 1 and new["name"].endswith(" (adapted without labels)")
    card = _card(ws, result.run_id)
    record = card["adaptation"]
    estimated = record["estimated_prior"]
    truth = _share(LOW, 1)
    urgent = estimated["intervals"]["LESION"]
    # The prior moves from training's 0.75 toward the site's 0.16 and its interval holds the truth.
    assert urgent["value"] < 0.4 and urgent["low"] <= truth <= urgent["high"], urgent
    assert "bootstrap percentile" in urgent["method"] and estimated["converged"]
    assert record["training_prior"]["prior"] == pytest.approx([0.25, 0.75])
    assert record["images"]["n"] == 50 and record["images"]["dataset_fingerprint"]
    assert record["who"] == "server shell" and record["created"] > 0
    assert ".jpeg" not in json.dumps(record)  # which images: a count and a fingerprint, never file names
    # The threshold keeps its rule: moved with the adjustment, so the calls on the view are the source's.
    before, after = record["threshold_before"], record["threshold_after"]
    q = [1 - urgent["value"], urgent["value"]]
    assert after == pytest.approx(adjust_threshold(before, [1], [0.25, 0.75], q)) and after < before
    assert card["operating_point"]["threshold"] == after and card["operating_point"]["rule"] == "youden"
    assert card["training_prior"]["prior"] == pytest.approx(q)  # what a further adaptation starts from

    # The new run's own probabilities are the Bayes-adjusted ones: from the stored source table (no images read) ...
    source_frame = predict(run_id, source["low"], ws)
    derived = predict(result.run_id, source["low"], ws)
    assert derived.attrs["meta"]["derived_from"]["run_id"] == run_id
    cols = ["prob_CLEAR", "prob_LESION"]
    expected = adjust_to_prior(source_frame[cols].to_numpy(), [0.25, 0.75], q)
    np.testing.assert_allclose(derived[cols].to_numpy(), expected, atol=1e-5)
    assert list(derived["predicted"]) == list(source_frame["predicted"])
    # ... and running the new checkpoint itself on the images gives the same probabilities.
    rerun = predict(result.run_id, source["low"], ws, use_cache=False)
    assert rerun.attrs["meta"]["derived_from"] is None
    np.testing.assert_allclose(rerun[cols].to_numpy(), expected, atol=0.03)


def test_another_prevalence_moves_the_estimate_the_other_way(source):
    from core.infer.recalibrate import adapt_unlabelled

    low = adapt_unlabelled(source["run_id"], source["low"], source["ws"], name="low site")
    high = adapt_unlabelled(source["run_id"], source["high"], source["ws"], name="high site")
    p_low = low.estimate["prior"][1]
    p_high = high.estimate["prior"][1]
    assert p_low < 0.5 < p_high
    assert abs(p_high - _share(HIGH, 1)) < 0.1 and abs(p_low - _share(LOW, 1)) < 0.1
    assert high.threshold_after > low.threshold_after
    assert source["ws"].get_run(low.run_id)["name"] == "low site"


def test_cli_prints_the_prevalence_threshold_and_the_new_run_id_last(source, monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setenv("CORE_WORKSPACE", str(source["ws"].root))
    assert main(["recalibrate", "--run", source["run_id"], "--data", str(source["high"]), "--unlabelled",
                 "--name", "cli site"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    new = source["ws"].get_run(lines[-1])
    assert new is not None and new["name"] == "cli site" and "adaptation" in _card(source["ws"], lines[-1])
    text = "\n".join(lines)
    assert "LESION: estimated prevalence" in text and "95% CI" in text and "threshold" in text
    assert "->" in text
    assert main(["recalibrate", "--run", source["run_id"], "--data", str(source["high"]), "--unlabelled",
                 "--sample-size", "20"]) == 2
    assert "--sample-size" in capsys.readouterr().err


def test_refusals_are_named(source, tmp_path):
    from core.infer.recalibrate import adapt_unlabelled
    from core.store.access import Actor

    ws, run_id = source["ws"], source["run_id"]
    few = make_kermany_folder(tmp_path / "few", classes=CLASSES, per_class=9, test_per_class=1, seed=3)  # 20
    with pytest.raises(InputError, match="20 site images; at least 30"):
        adapt_unlabelled(run_id, few, ws)
    with pytest.raises(InputError, match="did not converge in 1 iterations"):
        adapt_unlabelled(run_id, source["low"], ws, max_iter=1)
    with pytest.raises(InputError, match="must be one of em"):
        adapt_unlabelled(run_id, source["low"], ws, method="magic")
    with pytest.raises(PermissionError):
        adapt_unlabelled(run_id, source["low"], ws, actor=Actor("r1", "reader"))
    # A checkpoint whose card predates training_prior and has no run config to count from.
    old = tmp_path / "old"
    shutil.copytree(ws.runs_dir / run_id / "checkpoint", old)
    card = json.loads((old / "model_card.json").read_text())
    card.pop("training_prior")
    (old / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="does not say which class prior"):
        adapt_unlabelled(old, source["low"], ws)
    # A multi-label model: each label has its own prevalence.
    from core.data.tasks import get_task

    card["task"] = get_task("fundus-multilabel").to_dict()
    (old / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="multi-label"):
        adapt_unlabelled(old, source["low"], ws)


def test_recalibrating_a_recalibrated_run_keeps_a_clean_name_and_task(source):
    from core.infer.recalibrate import recalibrate

    ws = source["ws"]
    first = recalibrate(source["run_id"], source["high"], ws)
    second = recalibrate(first.run_id, source["high"], ws)
    for result in (first, second):
        row = ws.get_run(result.run_id)
        assert result.run_id.count("run-") == 1, result.run_id
        assert row["name"].count("(recalibrated)") == 1
        assert row["task"] == "custom-train"
    assert _card(ws, second.run_id)["derived_from"]["run_id"] == first.run_id


def test_derived_runs_need_the_right_to_start_runs_and_are_in_the_audit_trail(source):
    from core.infer.recalibrate import adapt_unlabelled, recalibrate
    from core.store.access import Actor
    from core.store.audit_trail import read_trail

    ws = source["ws"]
    with pytest.raises(PermissionError):
        recalibrate(source["run_id"], source["high"], ws, actor=Actor("r1", "reader"))
    rob = Actor("rob", "researcher")
    first = recalibrate(source["run_id"], source["high"], ws, actor=rob)
    second = adapt_unlabelled(source["run_id"], source["high"], ws, actor=rob)
    trail = read_trail(ws, actor=Actor("ada", "admin"), action="run_derived")
    rows = trail[trail["target"].isin([first.run_id, second.run_id])]
    assert sorted(rows["target"]) == sorted([first.run_id, second.run_id]) and set(rows["user"]) == {"rob"}
    assert all(source["run_id"] in d for d in rows["detail"])


def test_derived_runs_carry_a_referral_band_only_where_labels_show_it(source):
    # The source's band was calibrated on its training images: a labelled recalibration calibrates its own on the
    # site sample (or says why it cannot); a label-free adaptation has nothing to calibrate one on and says so.
    from core.infer.recalibrate import NO_BAND_WITHOUT_LABELS, adapt_unlabelled, recalibrate

    ws = source["ws"]
    source_card = _card(ws, source["run_id"])
    labelled = _card(ws, recalibrate(source["run_id"], source["high"], ws).run_id)
    calibration = labelled["referral_calibration"]
    assert calibration["source"].startswith("a site sample of") and calibration["scores"]
    assert calibration["scores"] != (source_card.get("referral_calibration") or {}).get("scores")
    assert (labelled["referral_band"] is None) == bool(calibration.get("reason"))
    # This small source has too few out-of-fold cases for a band: its reason travels on.
    assert source_card["referral_band"] is None and source_card["referral_calibration"]["reason"]
    unlabelled = _card(ws, adapt_unlabelled(source["run_id"], source["high"], ws).run_id)
    assert unlabelled["referral_band"] is None
    assert unlabelled["referral_calibration"] == source_card["referral_calibration"]
    # A source that has a band (calibrated here on plenty of built cases): the adapted run does not keep it.
    from core.metrics.selective import calibrate_band

    rng = np.random.default_rng(0)
    truth = rng.random(600) < 0.5
    scores = np.clip(np.where(truth, rng.beta(6, 2, 600), rng.beta(2, 6, 600)), 1e-4, 1 - 1e-4)
    threshold = source_card["operating_point"]["threshold"]
    band = calibrate_band(truth, scores, threshold, 0.10, 0.9, "built cases")
    banded = ws.root / "banded-source"
    shutil.copytree(ws.runs_dir / source["run_id"] / "checkpoint", banded / "checkpoint")
    card = json.loads((banded / "checkpoint" / "model_card.json").read_text())
    card["referral_band"] = band.to_dict()
    (banded / "checkpoint" / "model_card.json").write_text(json.dumps(card))
    adapted = _card(ws, adapt_unlabelled(banded / "checkpoint", source["high"], ws).run_id)
    assert adapted["referral_band"] is None
    assert adapted["referral_calibration"] == {"reason": NO_BAND_WITHOUT_LABELS}
