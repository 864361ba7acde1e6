"""The default features-mode recipe: logistic probe (grouped-CV strength), acquisition views, operating point."""

import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from core.errors import InputError
from core.infer import predict
from core.metrics.dashboard import calls_at_threshold
from core.metrics.model_operating_point import ModelOperatingPoint, choose_operating_point
from core.data.tasks import get_task
from core.models import create_head
from core.train import RunConfig, read_events, run_training
from core.train.probe import DEFAULT_CS, fit_logistic_probe
from tests.train_fixtures import TINY, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


def _blobs(n_per_class=30, d=12, k=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    x = np.concatenate([centres[c] + rng.normal(0, spread, (n_per_class, d)) for c in range(k)])
    y = np.repeat(np.arange(k), n_per_class)
    return x, y


def _softmax(logits):
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_probe_is_sklearns_logistic_regression_at_the_chosen_strength():
    x, y = _blobs(k=3)
    groups = np.arange(len(x)) // 2
    fit = fit_logistic_probe(x, y, groups, num_classes=3)
    assert fit.C in DEFAULT_CS and set(fit.cv_log_loss) == set(DEFAULT_CS) and fit.folds == 5
    assert fit.C == min(fit.cv_log_loss, key=fit.cv_log_loss.get)
    reference = LogisticRegression(C=fit.C, max_iter=5000, tol=1e-10).fit(x, y)
    ours = _softmax(x @ fit.weight.T + fit.bias)
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=2e-3)
    # The torch head built from it gives the same probabilities.
    head = create_head(x.shape[1], 3, "linear")
    head.load_state_dict(fit.head_state())
    with torch.no_grad():
        probs = torch.softmax(head.eval()(torch.as_tensor(x, dtype=torch.float32)), 1).numpy()
    np.testing.assert_allclose(probs, ours, atol=1e-4)


def test_binary_probe_gives_two_softmax_logits_equal_to_sklearns_sigmoid():
    x, y = _blobs(k=2)
    fit = fit_logistic_probe(x, y, np.arange(len(x)), num_classes=2, Cs=(0.1,))
    reference = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(x, y)
    assert fit.weight.shape == (2, x.shape[1])
    np.testing.assert_allclose(_softmax(x @ fit.weight.T + fit.bias), reference.predict_proba(x), atol=2e-3)


def test_cross_validation_never_splits_a_patient():
    # Random labels, each image present three times in its patient's group: a fold that trained on a copy of a
    # held-out image would recall its label; grouped folds must stay near chance.
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (60, 200))
    labels = rng.integers(0, 2, 60)
    x = np.repeat(base, 3, axis=0) + rng.normal(0, 0.01, (180, 200))
    y = np.repeat(labels, 3)
    groups = np.repeat(np.arange(60), 3)
    fit = fit_logistic_probe(x, y, groups, num_classes=2, Cs=(10.0,))
    oof_accuracy = (fit.oof_probabilities.argmax(1) == y).mean()
    assert oof_accuracy < 0.7
    # Ungrouped (every row its own patient), the copies leak and the same data look learnable.
    leaky = fit_logistic_probe(x, y, np.arange(180), num_classes=2, Cs=(10.0,))
    assert (leaky.oof_probabilities.argmax(1) == y).mean() > 0.9


def test_only_original_rows_are_scored_out_of_fold():
    x, y = _blobs(k=2, n_per_class=20)
    views = x + 0.1
    original = np.r_[np.ones(len(x), bool), np.zeros(len(x), bool)]
    fit = fit_logistic_probe(np.r_[x, views], np.r_[y, y], np.r_[np.arange(40), np.arange(40)], num_classes=2,
                             original=original)
    assert fit.oof_probabilities.shape == (40, 2) and list(fit.oof_rows) == list(range(40))
    assert not np.isnan(fit.oof_probabilities).any()


def test_each_fold_reports_the_curve_so_far_and_the_last_is_the_final_curve():
    x, y = _blobs(k=3)
    seen = []
    fit = fit_logistic_probe(x, y, np.arange(len(x)) // 2, num_classes=3,
                             on_fold=lambda done, folds, losses: seen.append((done, folds, dict(losses))))
    assert [(d, f) for d, f, _ in seen] == [(i, 5) for i in range(1, 6)]
    assert all(set(losses) == set(DEFAULT_CS) for _, _, losses in seen)
    assert seen[-1][2] == pytest.approx(fit.cv_log_loss)  # all folds pooled: the curve C was chosen on
    assert seen[0][2] != pytest.approx(fit.cv_log_loss)   # one fold's held-out rows only


def test_probe_refuses_one_class_and_mismatched_rows():
    with pytest.raises(InputError, match="one class"):
        fit_logistic_probe(np.ones((4, 3)), np.zeros(4), np.arange(4), num_classes=2)
    with pytest.raises(InputError, match="one row per image"):
        fit_logistic_probe(np.ones((4, 3)), np.array([0, 1, 0, 1]), np.arange(3), num_classes=2)


def test_operating_point_rules_on_a_hand_made_example():
    task = get_task("cxr-kermany")  # NORMAL, BACTERIAL, VIRAL; view pneumonia vs normal
    # pneumonia score = 1 - P(NORMAL): normals at 0.1, 0.2, 0.6; pneumonias at 0.4, 0.7, 0.8, 0.9
    p_normal = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.2, 0.1])
    probs = np.column_stack([p_normal, (1 - p_normal) * 0.7, (1 - p_normal) * 0.3])
    truth = np.array([0, 0, 0, 1, 2, 1, 1])
    youden = choose_operating_point(task, truth, probs, "youden")
    assert youden.view == "pneumonia vs normal" and youden.rule == "youden"
    # Best J = 3/4 + 3/3 - 1 at threshold 0.7 (0.4 gives 4/4 + 2/3 - 1 = 0.667): 0.7 is chosen, placed midway
    # to the next lower score 0.6.
    assert youden.threshold == pytest.approx(0.65)
    assert (youden.sensitivity, youden.specificity) == (pytest.approx(0.75), 1.0)
    screening = choose_operating_point(task, truth, probs, "sensitivity", 1.0)
    assert screening.sensitivity == 1.0 and screening.threshold == pytest.approx(0.3)  # midway 0.4 .. 0.2
    back = ModelOperatingPoint.from_dict(json.loads(json.dumps(screening.to_dict())))
    assert back == screening
    assert choose_operating_point(task, truth, probs, "argmax") is None
    with pytest.raises(InputError, match="rule"):
        choose_operating_point(task, truth, probs, "magic")
    with pytest.raises(InputError, match="operating point"):
        ModelOperatingPoint.from_dict({"view": "x"})


@pytest.fixture(scope="module")
def probe_run(oct_folder, tmp_path_factory):
    """The default recipe (logistic probe, 2 acquisition views) trained once for this module's tests."""
    from core.store import Workspace

    root = tmp_path_factory.mktemp("probe")
    ws = Workspace.open(root / "workspace")
    cfg = RunConfig(data=str(oct_folder), mode="features", views=2, **TINY)
    summary = run_training(cfg, root / "run", ws)
    return {"ws": ws, "run": root / "run", "summary": summary, "cfg": cfg, "root": root}


def test_default_recipe_trains_on_every_training_image_and_stores_its_operating_point(probe_run):
    summary, run = probe_run["summary"], probe_run["run"]
    assert summary["head_fit"] == "logistic" and "cross-validation on 24 training images" in summary["validation"]
    assert summary["val"]["n"] == 24 and summary["test"]["n"] == 8  # out-of-fold scores of all 24 (no val split)
    card = json.loads((run / "checkpoint" / "model_card.json").read_text())
    point = ModelOperatingPoint.from_dict(card["operating_point"])
    assert point.view == "urgent referral vs rest" and point.rule == "youden"
    assert point.n_positive + point.n_negative == 24 and 0 <= point.threshold <= 1
    assert card["preprocessing"]["framing"] == "squash" and card["preprocessing"]["crop_pct"] == 1.0
    assert {e["C"] for e in read_events(run, "cv")} == set(DEFAULT_CS)
    # Refer when unsure: 24 out-of-fold cases are too few for a band at 5% / 90%, and the card says so, keeping the
    # calibration scores of the same out-of-fold predictions (numbers only) for another target later.
    assert card["referral_band"] is None
    calibration = card["referral_calibration"]
    assert len(calibration["scores"]) == len(calibration["truth"]) == 24
    assert calibration["threshold"] == point.threshold and calibration["view"] == point.view
    assert "24 calibration cases cannot show an error among calls of at most 5.0%" in calibration["reason"]


def test_acquisition_views_are_cached_and_reused(probe_run, oct_folder):
    first = probe_run["summary"]["feature_cache"]
    assert len(first["keys"]) == 3 and len(set(first["keys"])) == 3  # view 0 and two acquisition views
    assert first["computed"] == 32 + 2 * 24  # every image once, and two views of each training image
    again = run_training(probe_run["cfg"], probe_run["root"] / "again", probe_run["ws"])
    assert again["feature_cache"]["computed"] == 0 and again["feature_cache"]["cached"] == 32 + 2 * 24
    from core.train.features import FeatureCache

    cache = FeatureCache(probe_run["ws"].cache_dir / "features")
    (ids0, view0), (ids1, view1) = cache.load(first["keys"][0]), cache.load(first["keys"][1])
    shared = [i for i in ids1 if i in ids0]
    a = view0[[ids0.index(i) for i in shared]]
    b = view1[[ids1.index(i) for i in shared]]
    assert len(shared) == 24 and not torch.allclose(a, b)


def test_predict_applies_the_models_operating_point(probe_run, oct_folder, tmp_path):
    ws, run = probe_run["ws"], probe_run["run"]
    frame = predict(run / "checkpoint", oct_folder, ws, split="test")
    card = json.loads((run / "checkpoint" / "model_card.json").read_text())
    point = ModelOperatingPoint.from_dict(card["operating_point"])
    task = get_task("oct-kermany")
    probs = frame[[f"prob_{c}" for c in task.classes]].to_numpy()
    expected = np.asarray(task.classes)[calls_at_threshold(probs, task.classes, point.binary_view, point.threshold)]
    assert list(frame["predicted"]) == list(expected)
    assert frame.attrs["meta"]["operating_point"]["threshold"] == point.threshold
    # The same weights with the threshold at 0: every case is called on the positive (urgent) side.
    moved = tmp_path / "moved"
    shutil.copytree(run / "checkpoint", moved)
    card["operating_point"]["threshold"] = 0.0
    (moved / "model_card.json").write_text(json.dumps(card))
    urgent = predict(moved, oct_folder, ws, split="test")
    assert set(urgent["predicted"]) <= {"CNV", "DME"}
    np.testing.assert_allclose(urgent[[f"prob_{c}" for c in task.classes]].to_numpy(), probs)


def _tree_digest(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_recalibration_makes_a_new_run_and_never_edits_the_source(probe_run, oct_folder, tmp_path):
    from core.infer.recalibrate import recalibrate

    ws, run = probe_run["ws"], probe_run["run"]
    before = _tree_digest(run)
    # The "new site": the same patterns re-saved darker and smaller, as another export pipeline might.
    site = tmp_path / "site"
    for path in sorted(oct_folder.rglob("*.jpeg")):
        target = site / path.relative_to(oct_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        image = Image.open(path).convert("L").resize((24, 24), Image.BILINEAR)
        image.point(lambda v: int(v * 0.7)).save(target, quality=70)
    result = recalibrate(run / "checkpoint", site, ws, sample_size=20, seed=3)
    assert _tree_digest(run) == before  # the source run is untouched
    new = ws.get_run(result.run_id)
    assert new["status"] == "succeeded" and result.run_id != result.source_run_id
    card = json.loads((ws.runs_dir / result.run_id / "checkpoint" / "model_card.json").read_text())
    assert card["operating_point"] == result.operating_point
    assert card["recalibration"]["sample_size"] == result.sample["n"] and result.sample["n_rest"] == 32 - result.sample["n"]
    assert "site sample" in card["operating_point"]["source"]
    for part in (result.before, result.after):
        assert part["n"] == result.sample["n_rest"]
        assert 0 <= part["sensitivity"]["low"] <= part["sensitivity"]["value"] <= part["sensitivity"]["high"] <= 1
    # Predictions of the new run follow its own operating point, on temperature-scaled probabilities.
    frame = predict(result.run_id, site, ws)
    task = get_task("oct-kermany")
    probs = frame[[f"prob_{c}" for c in task.classes]].to_numpy()
    point = ModelOperatingPoint.from_dict(card["operating_point"])
    expected = np.asarray(task.classes)[calls_at_threshold(probs, task.classes, point.binary_view, point.threshold)]
    assert list(frame["predicted"]) == list(expected)


def test_temperature_fit_recovers_a_known_temperature():
    from core.infer.recalibrate import fit_temperature, scale_probabilities

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 3))
    truth = np.array([rng.choice(3, p=p) for p in _softmax(logits)])
    overconfident = _softmax(logits * 3.0)  # the model's logits are 3x too large
    t = fit_temperature(overconfident, truth)
    assert t == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(scale_probabilities(overconfident, t), _softmax(logits * 3.0 / t), atol=1e-3)
    assert fit_temperature(_softmax(logits), truth) == pytest.approx(1.0, abs=0.1)


def test_a_perfectly_separated_sample_leaves_the_temperature_alone():
    # 40 site images the model separates perfectly: the log loss keeps falling as T -> 0, so no temperature is
    # identifiable. Sharpening to the search's floor made the rest of the site's probabilities exactly 0 or 1.
    from core.infer.recalibrate import MIN_TEMPERATURE, fit_temperature, scale_probabilities

    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1], 20)
    p1 = np.where(truth == 1, rng.uniform(0.6, 0.95, 40), rng.uniform(0.05, 0.4, 40))
    assert fit_temperature(np.column_stack([1 - p1, p1]), truth) == 1.0
    rest = rng.uniform(1e-4, 1 - 1e-4, 500)
    sharp = scale_probabilities(np.column_stack([1 - rest, rest]), MIN_TEMPERATURE)[:, 1]
    assert len(np.unique(sharp)) == len(np.unique(rest))  # even the sharpest allowed keeps every score distinct


def test_recalibrate_cli(probe_run, oct_folder, tmp_path, monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setenv("CORE_WORKSPACE", str(probe_run["ws"].root))
    out = tmp_path / "recal.json"
    assert main(["recalibrate", "--run", str(probe_run["run"]), "--data", str(oct_folder), "--sample-size", "16",
                 "--no-temperature", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["temperature"] == 1.0 and record["sample"]["n"] >= 10
    assert capsys.readouterr().out.strip().splitlines()[-1] == record["run_id"]  # the new run's id last, as elsewhere
    assert main(["recalibrate", "--run", str(probe_run["run"]), "--data", str(oct_folder), "--sample-size", "3"]) == 2


def test_feature_ensemble_trains_saves_and_predicts(oct_folder, workspace, tmp_path):
    from core.models import load_checkpoint

    cfg = RunConfig(data=str(oct_folder), mode="features", backbone="efficientnet_lite012", pretrained=False,
                    image_size=48, batch_size=8, num_workers=0)
    summary = run_training(cfg, tmp_path / "run", workspace)
    assert summary["head_fit"] == "logistic" and summary["test"]["n"] == 8
    model, card = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert card["backbone"] == "efficientnet_lite012" and model.num_features == 3 * 1280
    frame = predict(tmp_path / "run" / "checkpoint", oct_folder, workspace, split="test")
    assert len(frame) == 8 and np.allclose(frame.filter(like="prob_").sum(axis=1), 1.0)
    with pytest.raises(InputError, match="feature ensemble"):
        RunConfig(data=str(oct_folder), mode="finetune", backbone="efficientnet_lite012")


def test_cached_predictions_follow_the_image_ids_of_the_folder_given(probe_run, oct_folder):
    # The same test images, once as the split of the dataset and once as their own folder: one content
    # fingerprint and, since ids are relative to the split folder, one set of image ids (a readings CSV made
    # from either imports against the other); the cached table carries the ids of the folder given.
    from core.data import load_dataset

    ws, run = probe_run["ws"], probe_run["run"]
    as_split = predict(run / "checkpoint", oct_folder, ws, split="test")
    as_folder = predict(run / "checkpoint", oct_folder / "test", ws)
    assert set(as_folder["image_id"]) == set(load_dataset(oct_folder / "test").table["image_id"])
    assert set(as_split["image_id"]) == set(as_folder["image_id"])
    assert not any(i.startswith("test/") for i in as_split["image_id"])


def test_the_report_describes_a_logistic_head_by_its_fit_not_by_epochs(probe_run):
    """The report's model card said "Epochs: 1 run of 30 planned; Optimiser adam, learning rate 0.001" for a head
    that is fitted exactly by logistic regression."""
    from core.report.checklist import fill_checklist
    from core.report.methods import paste_ready
    from core.report.model_card import head_fitting, model_card
    from core.report.tables import model_card_table

    ws = probe_run["ws"]
    shutil.copytree(probe_run["run"], ws.runs_dir / "probe-run")
    card = model_card(ws, "probe-run")
    fitted = head_fitting(card)
    assert fitted.startswith("L2 logistic regression fitted exactly (no epochs), strength C = ")
    assert f"C = {probe_run['summary']['probe']['C']:g}" in fitted and "cross-validation on 24" in fitted
    rows = dict(model_card_table({"model": card}).rows)
    assert rows["Head fitting"] == fitted and "Epochs" not in rows and "Optimiser" not in rows
    assert any(r["answer"].startswith(f"Head: {fitted}") for r in fill_checklist({"model": card}))
    assert f"its new head: {fitted}." in paste_ready({"model": card}, [])
    assert head_fitting({**card, "head_fit": "adam"}) is None
