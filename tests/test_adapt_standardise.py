"""Label-free feature standardisation (adapt_unlabelled(method="standardise")) and the training feature statistics it
maps onto, on a tiny trained features-mode model (the test_efficientnet backbone, as in tests/test_adapt.py).

The site is the training images with their contrast squeezed (grey levels 0..255 -> 60..180): the same cases, another
export. A copy of the training images unchanged is the control: its features are the training features, so the map
must be the identity."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError
from core.infer import predict
from core.train import RunConfig, run_training
from tests.train_fixtures import TINY, make_kermany_folder, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")

CLASSES = ("CLEAR", "LESION")


def _transformed_copy(src, dst, table):
    """dst: src's train/ images through a grey-level table, or copied byte for byte without one (the test split
    left out)."""
    for path in sorted((src / "train").rglob("*.jpeg")):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if table is None:
            shutil.copyfile(path, target)
        else:
            Image.open(path).convert("L").point(table).save(target, quality=95)
    return dst


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from core.store import Workspace

    root = tmp_path_factory.mktemp("standardise")
    ws = Workspace.open(root / "workspace")
    data = make_kermany_folder(root / "train", classes=CLASSES, counts={"CLEAR": 20, "LESION": 20}, test_per_class=1)
    cfg = RunConfig(data=str(data), mode="features", binary="LESION:CLEAR", **{**TINY, "head_fit": "logistic"})
    run_id = ws.create_run(config={**cfg.to_dict(), "task": "auto"})
    run_training(cfg, ws.runs_dir / run_id, ws, log=lambda *_: None)
    ws.update_run(run_id, status="succeeded")
    same = _transformed_copy(data, root / "same", None)  # the training images themselves, in another folder
    low = _transformed_copy(data, root / "low_contrast", [round(60 + i * 120 / 255) for i in range(256)])
    return {"ws": ws, "run_id": run_id, "root": root, "data": data, "same": same, "low": low}


def _card(ws, run_id):
    return json.loads((ws.runs_dir / run_id / "checkpoint" / "model_card.json").read_text())


def _tree_digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _site_features(ws, run_id, site):
    """The site's pooled features as the source backbone gives them (through the feature cache), in table order."""
    from core.data import load_dataset
    from core.infer.recalibrate import site_features
    from core.models import load_checkpoint

    model, card = load_checkpoint(ws.runs_dir / run_id / "checkpoint")
    ds = load_dataset(str(site))
    x, _ = site_features(model, card, ds, np.arange(len(ds)), ds.fingerprint, ws)
    return ds, x


def test_training_stores_the_feature_statistics_of_the_rows_the_head_is_fitted_on(source):
    from core.models.feature_stats import FEATURE_STATS_NAME, read_feature_stats
    from core.train.features import FeatureCache

    ws, run_id = source["ws"], source["run_id"]
    folder = ws.runs_dir / run_id / "checkpoint"
    card = _card(ws, run_id)
    record = card["feature_stats"]
    assert record["file"] == FEATURE_STATS_NAME and (folder / FEATURE_STATS_NAME).is_file()
    assert record["n"] == 40 and "no acquisition views" in record["basis"]  # the logistic probe: every non-test image
    stats = read_feature_stats(folder, card)
    # The cached view-0 features of the training images (not the test split, not the acquisition views).
    ids, cached = FeatureCache(ws.cache_dir / "features").load(card["training"]["feature_cache"]["key"])
    x = cached.numpy().astype(np.float64)[[not i.startswith("test") for i in ids]]
    assert len(x) == 40 and stats.dim == x.shape[1]
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.std, x.std(axis=0), rtol=1e-6, atol=1e-6)


def test_standardising_to_the_training_images_themselves_is_the_identity(source):
    from core.infer.recalibrate import adapt_unlabelled
    from core.models import load_checkpoint
    from core.models.factory import input_affine

    result = adapt_unlabelled(source["run_id"], source["same"], source["ws"], method="standardise")
    model, _ = load_checkpoint(result.run_dir)
    affine = input_affine(model)
    live = (affine.scale != 0).numpy()  # features constant on these images are set to their (same) mean
    np.testing.assert_allclose(affine.scale.numpy()[live], 1.0, atol=1e-3)
    np.testing.assert_allclose(affine.shift.numpy(), 0.0, atol=1e-3 * (1 + np.abs(affine.shift.numpy()).max()))


def test_a_standardised_run_maps_the_site_onto_the_training_statistics_and_leaves_the_source(source):
    import torch

    from core.infer.recalibrate import STANDARDISE_METHOD, STANDARDISE_WARNING, adapt_unlabelled
    from core.models import get_head, load_checkpoint
    from core.models.factory import input_affine
    from core.models.feature_stats import read_feature_stats

    ws, run_id = source["ws"], source["run_id"]
    predict(run_id, source["low"], ws)  # the source's table on the site exists: the new run must not derive from it
    before_files, before_row = _tree_digest(ws.runs_dir / run_id), ws.get_run(run_id)
    result = adapt_unlabelled(run_id, source["low"], ws, method="standardise", name="std site")
    assert _tree_digest(ws.runs_dir / run_id) == before_files and ws.get_run(run_id) == before_row
    assert ws.get_run(result.run_id)["name"] == "std site" and ws.get_run(result.run_id)["status"] == "succeeded"

    source_card, card = _card(ws, run_id), _card(ws, result.run_id)
    record = card["adaptation"]
    assert record["method"] == result.method == STANDARDISE_METHOD and record["warning"] == STANDARDISE_WARNING
    assert record["images"]["n"] == 40 and record["images"]["dataset_fingerprint"] and record["who"]
    assert ".jpeg" not in json.dumps(record)  # a count and a fingerprint, never file names
    assert card["input_affine"] is True and card["derived_from"]["input_affine"] is True
    # The source's operating point, threshold unchanged.
    assert card["operating_point"] == source_card["operating_point"]
    assert record["threshold_before"] == record["threshold_after"] == source_card["operating_point"]["threshold"]

    # After the affine layer, the site's features have the training features' mean and spread.
    training = read_feature_stats(ws.runs_dir / run_id / "checkpoint", source_card)
    _, x = _site_features(ws, run_id, source["low"])
    model, _ = load_checkpoint(result.run_dir)
    affine = input_affine(model)
    live = training.std > 1e-9
    gap = np.abs(x.mean(axis=0) - training.mean)[live] / training.std[live]
    assert np.median(gap) > 0.1  # the contrast change did move the features (in training standard deviations)
    with torch.no_grad():
        mapped = affine(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(mapped.mean(axis=0), training.mean, atol=1e-3 * training.std.max())
    np.testing.assert_allclose(mapped.std(axis=0)[live], training.std[live], rtol=1e-3)

    # predict runs the new model on the images (not the source-table shortcut): head(affine(features)).
    frame = predict(result.run_id, source["low"], ws)
    assert frame.attrs["meta"]["derived_from"] is None and not frame.attrs["cached"]
    source_model, _ = load_checkpoint(ws.runs_dir / run_id / "checkpoint")
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0) * training.std + training.mean
    with torch.no_grad():
        expected = torch.softmax(get_head(source_model)(torch.as_tensor(z, dtype=torch.float32)), dim=1).numpy()
    cols = ["prob_CLEAR", "prob_LESION"]
    np.testing.assert_allclose(frame[cols].to_numpy(), expected, atol=2e-3)
    source_frame = predict(run_id, source["low"], ws)
    assert not np.allclose(source_frame[cols].to_numpy(), expected, atol=2e-3)  # standardising changed them

    # A second standardisation to the same images reads the features back from the cache.
    again = adapt_unlabelled(run_id, source["low"], ws, method="standardise")
    assert json.loads((ws.runs_dir / again.run_id / "adaptation.json").read_text())["features"]["computed"] == 0


def test_the_affine_layer_round_trips_and_the_head_keeps_working(source, tmp_path):
    import torch

    from core.explain import explain
    from core.infer.recalibrate import adapt_unlabelled
    from core.models import attach_head, get_head, load_checkpoint, save_checkpoint
    from core.models.factory import input_affine

    ws = source["ws"]
    result = adapt_unlabelled(source["run_id"], source["low"], ws, method="standardise")
    model, card = load_checkpoint(result.run_dir)
    first = input_affine(model)
    assert first is not None and get_head(model).head_kind == "linear"
    assert (ws.runs_dir / result.run_id / "checkpoint" / card["feature_stats"]["file"]).is_file()
    save_checkpoint(model, tmp_path / "copy", card)
    again, card2 = load_checkpoint(tmp_path / "copy")
    assert card2["input_affine"] is True
    assert torch.equal(input_affine(again).scale, first.scale) and torch.equal(input_affine(again).shift, first.shift)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(image), model(image))
    attach_head(again, get_head(again))  # still a create_head head for attach_head
    assert input_affine(again) is not None
    with torch.no_grad():
        p = float(torch.softmax(model(image), dim=1)[0, 1])
    for method, params in (("gradcam", {}), ("occlusion", {"window": 16, "stride": 16})):
        amap = explain(model, image, 1, method, **params)
        assert amap.map.shape == (32, 32) and np.isfinite(amap.map).all()
        assert amap.probability == pytest.approx(p, abs=2e-2)  # through the affine layer (bf16 where native)


def test_a_card_without_feature_statistics_is_refused_by_name(source, tmp_path):
    from core.infer.recalibrate import adapt_unlabelled

    old = tmp_path / "old"
    shutil.copytree(source["ws"].runs_dir / source["run_id"] / "checkpoint", old)
    card = json.loads((old / "model_card.json").read_text())
    card.pop("feature_stats")
    (old / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="trained before feature statistics were stored.*retrain it, or use EM "
                                         "adaptation"):
        adapt_unlabelled(old, source["low"], source["ws"], method="standardise")
    few = make_kermany_folder(tmp_path / "few", classes=CLASSES, per_class=9, test_per_class=1, seed=3)  # 20
    with pytest.raises(InputError, match="20 site images; at least 30"):
        adapt_unlabelled(source["run_id"], few, source["ws"], method="standardise")


def test_cli_standardise_warns_and_prints_the_new_run_last(source, monkeypatch, capsys):
    from core.__main__ import main
    from core.infer.recalibrate import STANDARDISE_WARNING

    ws = source["ws"]
    monkeypatch.setenv("CORE_WORKSPACE", str(ws.root))
    assert main(["recalibrate", "--run", source["run_id"], "--data", str(source["low"]), "--unlabelled",
                 "--standardise", "--name", "cli std"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert ws.get_run(lines[-1])["name"] == "cli std"
    assert _card(ws, lines[-1])["adaptation"]["method"] == "feature standardisation"
    assert STANDARDISE_WARNING in err and "threshold" in out and "kept" in out
    assert main(["recalibrate", "--run", source["run_id"], "--data", str(source["low"]), "--standardise"]) == 2
    assert "--standardise is a label-free adaptation: use it with --unlabelled" in capsys.readouterr().err


def test_adaptation_text_says_a_run_was_standardised(source):
    from core.infer.recalibrate import STANDARDISE_METHOD, adapt_unlabelled
    from core.infer.site_check import ADAPT_CHOICES, STANDARDISED, adaptation_text

    assert STANDARDISED == STANDARDISE_METHOD and list(ADAPT_CHOICES.values()) == ["em", "standardise"]
    result = adapt_unlabelled(source["run_id"], source["low"], source["ws"], method="standardise")
    card = _card(source["ws"], result.run_id)
    text = adaptation_text(card, "R std")
    threshold = card["operating_point"]["threshold"]
    assert text.startswith("Calls from run R std, adapted without labels to a site's images (40 images) by feature "
                           "standardisation")
    assert f"threshold {threshold:.3f} kept" in text and f"from run {source['run_id']}, which is unchanged" in text
    assert "class mix" in text and "estimated prevalence" not in text


def test_fine_tuning_stores_the_final_models_feature_statistics_of_its_training_images(tmp_path):
    import torch

    from core.models import build_transform, load_checkpoint
    from core.models.feature_stats import PooledFeatures, read_feature_stats
    from core.store import Workspace
    from core.train.features import extract_features
    from core.train.plan import prepare_data

    ws = Workspace.open(tmp_path / "workspace")
    data = make_kermany_folder(tmp_path / "train", classes=CLASSES, per_class=8, test_per_class=1)
    cfg = RunConfig(data=str(data), mode="finetune", **{**TINY, "epochs": 1, "amp": "off"})
    run_id = ws.create_run(config={**cfg.to_dict(), "task": "auto"})
    run_training(cfg, ws.runs_dir / run_id, ws, log=lambda *_: None)
    folder = ws.runs_dir / run_id / "checkpoint"
    model, card = load_checkpoint(folder)
    stats = read_feature_stats(folder, card)
    plan = prepare_data(cfg)
    assert stats.n == len(plan.train_rows) == card["training"]["images"]["train"]
    assert "no acquisition views" in stats.basis
    # The saved model's pooled features of the training split as stored (no augmentation, not validation).
    x = extract_features(PooledFeatures(model), plan.dataset, plan.train_rows,
                         build_transform(card["preprocessing"], train=False), torch.device("cpu"),
                         num_workers=0).numpy().astype(np.float64)
    scale = np.abs(x).max()
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), atol=1e-4 * scale)
    np.testing.assert_allclose(stats.std, x.std(axis=0), atol=1e-4 * scale)


def test_the_site_section_offers_both_label_free_remedies_and_standardising_says_so(own_seeded_workspace, tmp_path):
    from core.infer.recalibrate import STANDARDISE_WARNING
    from core.infer.site_check import ADAPT_CHOICES, adaptation_text, read_card
    from core.store import Workspace
    from dashboard.widgets import plain
    from tests._site_data import shifted_test_set
    from tests.apptest import open_page

    seeded = own_seeded_workspace
    site = shifted_test_set(seeded, tmp_path / "site")
    ws = Workspace.open(seeded["root"])
    at = open_page("../pages/performance.py", run_id=seeded["run_id"], test_set_id=site)
    choice = at.radio(key="perf_site_adapt_method")
    assert list(choice.options) == list(ADAPT_CHOICES) and choice.value == "Prevalence (EM, keeps the calls)"
    assert choice.help == STANDARDISE_WARNING
    runs_before = {r["id"] for r in ws.list_runs()}
    choice.set_value("Standardise features (export/acquisition change, similar prevalence)").run()
    at.button(key="perf_site_adapt").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = [r for r in ws.list_runs() if r["id"] not in runs_before]
    assert len(new) == 1 and ws.find_predictions(new[0]["id"], site) is not None
    card = read_card(ws, new[0]["id"])
    assert card["adaptation"]["method"] == "feature standardisation" and card["input_affine"] is True
    sentence = adaptation_text(card, new[0]["name"])
    assert "by feature standardisation" in sentence and any(i.value == plain(sentence) for i in at.info)


def test_derived_runs_carry_the_training_statistics_so_they_can_be_standardised_too(source):
    from core.infer.recalibrate import adapt_unlabelled, recalibrate
    from core.models.feature_stats import read_feature_stats

    ws = source["ws"]
    training = read_feature_stats(ws.runs_dir / source["run_id"] / "checkpoint", _card(ws, source["run_id"]))
    labelled = recalibrate(source["run_id"], source["low"], ws)
    folder = ws.runs_dir / labelled.run_id / "checkpoint"
    carried = read_feature_stats(folder, _card(ws, labelled.run_id))
    np.testing.assert_array_equal(carried.mean, training.mean)
    np.testing.assert_array_equal(carried.std, training.std)
    # A standardised run keeps the training statistics too (not the site's): a later standardisation maps onto them.
    adapt_unlabelled(source["run_id"], source["low"], ws, method="standardise")  # the source's, filling the cache
    std = adapt_unlabelled(labelled.run_id, source["low"], ws, method="standardise")
    kept = read_feature_stats(ws.runs_dir / std.run_id / "checkpoint", _card(ws, std.run_id))
    np.testing.assert_array_equal(kept.mean, training.mean)
    record = json.loads((ws.runs_dir / std.run_id / "adaptation.json").read_text())
    assert record["features"]["computed"] == 0  # same backbone as the source: its site features came from the cache
