"""Damaged cache entries (features, attribution maps, predictions tables) are reported, deleted and recomputed;
no page crashes on a damaged predictions file (issue 14, item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.explain import MapCache, explain
from core.infer import predict, read_predictions, write_predictions
from core.store.integrity import DamagedCacheWarning, DamagedFileError
from core.train import RunConfig, run_training
from tests._evaluation_data import build_workspace, predictions_table, synthetic_probabilities, synthetic_truth
from tests.apptest import open_page
from tests.hostile.corpus import cases
from tests.test_explain_cache import CountingModel
from tests.train_fixtures import TINY, make_kermany_folder, one_torch_thread  # noqa: F401 (autouse fixture)

DAMAGE = cases("damage")
pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


@pytest.fixture(scope="module")
def tiny_oct(tmp_path_factory):
    return make_kermany_folder(tmp_path_factory.mktemp("oct"), per_class=3, test_per_class=1)


def _features_run(data, workspace, run_dir):
    # The Adam head fit: one cache entry (the image as stored); the logistic probe adds acquisition views, each
    # cached under its own key through the same checked load.
    return run_training(RunConfig(data=str(data), mode="features", epochs=1, head_fit="adam", **TINY), run_dir,
                        workspace)


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_damaged_feature_cache_is_reported_deleted_and_recomputed(damage, tiny_oct, workspace, tmp_path):
    first = _features_run(tiny_oct, workspace, tmp_path / "a")
    (entry,) = (workspace.cache_dir / "features").glob("*.safetensors")
    damage.build(tmp_path)(entry)
    with pytest.warns(DamagedCacheWarning, match="damaged cache entry"):
        second = _features_run(tiny_oct, workspace, tmp_path / "b")
    assert second["feature_cache"]["cached"] == 0 and second["feature_cache"]["computed"] == 16
    assert second["feature_cache"]["key"] == first["feature_cache"]["key"] and entry.is_file()  # written again


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_damaged_map_is_reported_deleted_and_recomputed(damage, tmp_path):
    torch.manual_seed(0)
    model, cache, image = CountingModel(), MapCache(tmp_path / "maps"), torch.rand(1, 3, 24, 24)
    original = explain(model, image, 0, "occlusion", cache=cache, model_id="m1", window=8, stride=8)
    (entry,) = (tmp_path / "maps").rglob("*.safetensors")
    damage.build(tmp_path)(entry)
    calls = model.calls
    with pytest.warns(DamagedCacheWarning, match="damaged cache entry"):
        again = explain(model, image, 0, "occlusion", cache=cache, model_id="m1", window=8, stride=8)
    assert model.calls > calls and np.array_equal(again.map, original.map)


def _predictions_file(tmp_path):
    from core.data.tasks import get_task

    task = get_task("oct-kermany")
    truth = synthetic_truth(task, 60)
    frame = predictions_table(task, truth, synthetic_probabilities(task, truth))
    path = tmp_path / "p.parquet"
    write_predictions(frame, path, {"task": task.to_dict(), "run_id": "r1", "dataset_id": "t1"})
    return path


def test_no_single_bit_flip_in_a_predictions_file_changes_it_silently(tmp_path):
    path = _predictions_file(tmp_path)
    good = path.read_bytes()
    frame, meta = read_predictions(path)
    rng = np.random.default_rng(0)
    silent, detected = [], 0
    for bit in rng.choice(len(good) * 8, size=200, replace=False):
        data = bytearray(good)
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        try:
            again, again_meta = read_predictions(path)
        except DamagedFileError:
            detected += 1
            continue
        if not (again.equals(frame) and again_meta == meta):
            silent.append(int(bit))
    assert silent == [] and detected > 100


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_predict_recomputes_a_damaged_predictions_file(damage, tiny_oct, workspace, tmp_path):
    run_dir = tmp_path / "run"
    _features_run(tiny_oct, workspace, run_dir)
    first = predict(run_dir, tiny_oct, workspace, split="test", num_workers=0)
    damage.build(tmp_path)(Path(first.attrs["path"]))
    with pytest.warns(DamagedCacheWarning, match="damaged cache entry"):
        second = predict(run_dir, tiny_oct, workspace, split="test", num_workers=0)
    assert second.attrs["cached"] is False and second.equals(first)
    assert read_predictions(first.attrs["path"])[0].equals(first)  # the file is whole again


@pytest.mark.parametrize("page", ["performance", "experts", "report", "explain"])
def test_pages_show_a_message_for_a_damaged_predictions_file(page, tmp_path, monkeypatch):
    ids = build_workspace(tmp_path / "ws", n=120)
    DAMAGE[1].build(tmp_path)(Path(ids["paths"][0]))
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at: AppTest = open_page(f"../pages/{page}.py", run_id=ids["run_ids"][0], test_set_id=ids["test_set_id"])
    assert not at.exception
    assert any("cannot be used" in e.value for e in at.error)
    assert any(ids["paths"][0] in c.value and "not a readable predictions table" in c.value for c in at.code)
