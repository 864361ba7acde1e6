"""Features mode: cache reuse, limited data, balancing, binary one-vs-rest, multi-label and ordinal, repeatability."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from core.data import load_dataset
from core.data.tasks import get_task, task_from_dict
from core.errors import InputError
from core.train import RunConfig, read_events, run_training
from core.train.plan import prepare_data
from tests.train_fixtures import (
    TINY,
    make_kermany_folder,
    make_table_dataset,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


@pytest.fixture(scope="module")
def oct_folder(tmp_path_factory):
    return make_kermany_folder(tmp_path_factory.mktemp("oct"), per_class=8, test_per_class=2)


def _features(data, **kw):
    # These tests exercise the Adam head loop (epochs, steps, early stopping); the logistic probe, the default,
    # has its own tests in test_train_probe.py.
    kw.setdefault("head_fit", "adam")
    return RunConfig(data=str(data), mode="features", epochs=kw.pop("epochs", 4), **{**TINY, **kw})


def test_second_run_reuses_the_feature_cache(oct_folder, workspace, tmp_path):
    first = run_training(_features(oct_folder), tmp_path / "a", workspace)
    assert first["feature_cache"]["computed"] == 40 and first["feature_cache"]["cached"] == 0
    files = sorted((workspace.cache_dir / "features").glob("*.safetensors"))
    assert len(files) == 1 and files[0].stem == first["feature_cache"]["key"]
    # A limited-data run of the same data and backbone reads every image from the cache.
    second = run_training(_features(oct_folder, per_class=3, head="mlp"), tmp_path / "b", workspace)
    assert second["feature_cache"] == {**second["feature_cache"], "computed": 0, "key": first["feature_cache"]["key"]}
    # Another preprocessing (image size) is another cache entry.
    third = run_training(_features(oct_folder, image_size=40), tmp_path / "c", workspace)
    assert third["feature_cache"]["computed"] == 40 and third["feature_cache"]["key"] != first["feature_cache"]["key"]


def test_run_folder_holds_config_events_checkpoint(oct_folder, workspace, tmp_path):
    summary = run_training(_features(oct_folder), tmp_path / "run", workspace)
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["task"]["name"] == "oct-kermany" and len(config["dataset_fingerprint"]) == 64
    card = json.loads((run / "checkpoint" / "model_card.json").read_text())
    assert card["classes"] == list(get_task("oct-kermany").classes) and card["training"]["mode"] == "features"
    kinds = {e["type"] for e in read_events(run)}
    assert {"status", "extract", "step", "epoch", "summary"} <= kinds
    val = read_events(run, "epoch")[-1]
    for key in ("loss", "accuracy", "auroc", "metric", "metric_value", "elapsed_s", "eta_s", "step", "epoch"):
        assert key in val
    step = read_events(run, "step")[0]
    assert step["images_per_s"] > 0 and step["lr"] == pytest.approx(1e-3)
    assert summary["best_epoch"] >= 1 and summary["test"]["n"] == 8


def test_limited_subsets_per_class_and_fraction(oct_folder):
    per_class = prepare_data(_features(oct_folder, per_class=3))
    labels = per_class.dataset.table["label"].to_numpy()[per_class.train_rows]
    assert {c: int((labels == c).sum()) for c in set(labels)} == {"CNV": 3, "DME": 3, "DRUSEN": 3, "NORMAL": 3}
    full = prepare_data(_features(oct_folder))
    half = prepare_data(_features(oct_folder, fraction=0.5))
    assert len(half.train_rows) == pytest.approx(len(full.train_rows) / 2, abs=4)
    # Validation rows are set aside first, by patient, and never drawn into the training subset.
    assert not set(per_class.train_rows) & set(per_class.val_rows)
    patients = per_class.dataset.table["patient_id"]
    assert not set(patients.iloc[per_class.train_rows]) & set(patients.iloc[per_class.val_rows])


def test_binary_one_vs_rest_from_multiclass(oct_folder, workspace, tmp_path):
    data = prepare_data(_features(oct_folder, binary="CNV vs NORMAL"))
    assert data.task.kind == "binary" and data.task.classes == ("NORMAL", "CNV")
    assert set(data.dataset.table["label"]) == {"CNV", "NORMAL"} and len(data.dataset) == 20
    rest = prepare_data(_features(oct_folder, binary="DME"))  # DME vs all other classes
    assert rest.task.classes == ("rest", "DME") and len(rest.dataset) == 40
    summary = run_training(_features(oct_folder, binary={"positive": ["CNV", "DME"], "negative": ["NORMAL"]},
                                     balance="weights"), tmp_path / "run", workspace)
    card = json.loads((tmp_path / "run" / "checkpoint" / "model_card.json").read_text())
    assert card["binary"]["positive"] == ["CNV", "DME"] and card["task"]["kind"] == "binary"
    assert summary["images"]["classes"] == ["NORMAL", "CNV+DME"]
    with pytest.raises(InputError, match="unknown label"):
        prepare_data(_features(oct_folder, binary="TUMOUR"))


def test_balanced_sampler_run(oct_folder, tmp_path, workspace):
    skewed = make_kermany_folder(tmp_path / "skewed", counts={"CNV": 16, "DME": 4, "DRUSEN": 4, "NORMAL": 4})
    summary = run_training(_features(skewed, balance="sampler"), tmp_path / "run", workspace)
    assert summary["epochs_run"] >= 1 and np.isfinite(summary["val"]["loss"])


def test_multilabel_head_uses_bce(tmp_path, workspace):
    task = task_from_dict({"name": "three-labels", "kind": "multilabel", "classes": ["A", "B", "C"]})
    ds = make_table_dataset(tmp_path / "ml", task, per_class=8)
    cfg = _features(tmp_path / "ml", epochs=30, lr=1e-2, balance="weights")
    summary = run_training(cfg, tmp_path / "run", workspace, dataset=ds)
    assert summary["metric"] == "auroc" and 0 <= summary["val"]["accuracy"] <= 1
    card = json.loads((tmp_path / "run" / "checkpoint" / "model_card.json").read_text())
    assert card["kind"] == "multilabel" and card["num_classes"] == 3


def test_ordinal_task_reports_quadratic_kappa(tmp_path, workspace):
    ds = make_table_dataset(tmp_path / "dr", get_task("dr-grading"), per_class=6)
    summary = run_training(_features(tmp_path / "dr", epochs=5), tmp_path / "run", workspace, dataset=ds)
    assert summary["metric"] == "kappa"
    assert all("kappa" in e for e in read_events(tmp_path / "run", "epoch") if e["split"] == "val")


def test_same_seed_same_result_on_cpu(oct_folder, workspace, tmp_path):
    cfg = _features(oct_folder, epochs=3, seed=7, head="mlp", drop_rate=0.2)
    a = run_training(cfg, tmp_path / "a", workspace)
    b = run_training(cfg, tmp_path / "b", workspace)
    wa = load_file(str(tmp_path / "a" / "checkpoint" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoint" / "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert a["val"] == b["val"]
    run_training(cfg.replace(seed=8), tmp_path / "c", workspace)
    wc = load_file(str(tmp_path / "c" / "checkpoint" / "model.safetensors"))
    assert any(not (wa[k] == wc[k]).all() for k in wa if k.startswith("classifier"))


def test_features_mode_learns_the_patterns(oct_folder, workspace, tmp_path):
    # Random-init tiny backbone, but its pooled features still separate the class patterns.
    summary = run_training(_features(oct_folder, epochs=60, lr=1e-2, val_metric="accuracy"), tmp_path / "r",
                           workspace)
    assert summary["val"]["accuracy"] > 0.5 and summary["test"]["auroc"] > 0.9  # chance: 0.25 and 0.5


def test_dataset_changed_before_resume_is_refused(oct_folder, workspace, tmp_path):
    cfg = _features(oct_folder).replace(dataset_fingerprint="0" * 64)
    with pytest.raises(InputError, match="changed"):
        run_training(cfg, tmp_path / "r", workspace, resume=True)
    assert load_dataset(oct_folder).fingerprint != "0" * 64
