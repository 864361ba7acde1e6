"""A real example out of the box: `demo-data --real` builds a small demo from a MedMNIST .npz the user has (a
training set and a held-out test set copied into the workspace and registered), and the demo's model trains on it;
a file that is not MedMNIST-shaped is refused, naming the file and not its server folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.demo import build_real_demo, real_demo_status
from core.errors import InputError
from core.store import Workspace
from tests.train_fixtures import one_torch_thread, pattern_image  # noqa: F401

SHARED_PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist_train_val.npz"


def _medmnist(path: Path, splits=(("train", 30), ("test", 12)), n_classes: int = 2, multilabel: bool = False) -> Path:
    """A MedMNIST-shaped .npz of 28 px class-dependent patterns: {split}_images (n, 28, 28) uint8, {split}_labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in splits:
        labels = np.arange(n) % n_classes
        arrays[f"{split}_images"] = np.stack([np.asarray(pattern_image(int(c), n_classes, rng, 28)) for c in labels])
        arrays[f"{split}_labels"] = (np.eye(n_classes, dtype=np.uint8)[labels] if multilabel
                                     else labels.reshape(-1, 1).astype(np.uint8))
    np.savez_compressed(path, **arrays)
    return path


def test_a_medmnist_file_becomes_a_training_set_and_a_held_out_test_set(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    npz = _medmnist(tmp_path / "toymnist.npz")
    built = build_real_demo(ws, npz, train_per_class=10, test_per_class=4)
    assert (built["n_train"], built["n_test"]) == (20, 8)
    train, test = ws.get_dataset(built["dataset_id"]), ws.get_dataset(built["test_set_id"])
    assert (train["role"], test["role"]) == ("dataset", "test_set")
    assert train["task"] == test["task"] == built["task"]  # one task: the test set can judge the model
    assert (train["n_images"], test["n_images"]) == (20, 8)
    for record in (train, test):  # copied into the workspace: the user's file may move
        assert Path(record["source"]).resolve().is_relative_to(ws.root.resolve())
        assert "/" not in record["name"] and "toymnist" in record["name"]
    assert real_demo_status(ws)["dataset_id"] == built["dataset_id"]
    again = build_real_demo(ws, npz, train_per_class=10, test_per_class=4)
    assert (again["dataset_id"], again["test_set_id"]) == (built["dataset_id"], built["test_set_id"])
    # The file has no test split: its val split is held out.
    val_only = build_real_demo(ws, _medmnist(tmp_path / "valmnist.npz", splits=(("train", 20), ("val", 10))),
                               train_per_class=5, test_per_class=5)
    assert val_only["n_test"] == 10


@pytest.mark.parametrize("case, expected", [
    ("not_medmnist", "not a MedMNIST .npz"),
    ("multilabel", "multi-label"),
    ("one_split", "held-out split"),
    ("suffix", "not a .npz file"),
])
def test_a_file_that_is_not_medmnist_shaped_is_refused_by_name(tmp_path, case, expected):
    ws = Workspace.open(tmp_path / "ws")
    folder = tmp_path / "server" / "data"
    folder.mkdir(parents=True)
    if case == "not_medmnist":
        path = folder / "weights.npz"
        np.savez(path, conv1=np.zeros((3, 3)), fc=np.ones(4))
    elif case == "multilabel":
        path = _medmnist(folder / "chestmnist.npz", n_classes=3, multilabel=True)
    elif case == "one_split":
        path = _medmnist(folder / "trainonly.npz", splits=(("train", 20),))
    else:
        path = folder / "images.zip"
        path.write_bytes(b"PK")
    with pytest.raises(InputError, match=expected) as info:
        build_real_demo(ws, path)
    assert path.name in str(info.value) and str(folder) not in str(info.value)
    assert ws.list_datasets() == [] and real_demo_status(ws) == {}


def test_the_real_demo_model_trains_on_it(tmp_path):
    """The demo's recipe (frozen features + logistic head) on the registered images, here with the tiny test
    backbone (the real one is timed in benchmarks/bench_demo_real.py)."""
    from core.train.demo import REAL_DEMO_SIZE, real_demo_run_config
    from core.train.runner import execute_run

    ws = Workspace.open(tmp_path / "ws")
    built = build_real_demo(ws, _medmnist(tmp_path / "toymnist.npz"), train_per_class=12, test_per_class=4)
    config = real_demo_run_config(ws, backbone="test_efficientnet")
    assert config["mode"] == "features" and config["dataset_id"] == built["dataset_id"]
    assert config["image_size"] == REAL_DEMO_SIZE and config["head_fit"] == "logistic"
    config["image_size"] = 32
    run_id = ws.create_run(config=config, name=config["name"])
    from core.train.config import RunConfig

    RunConfig.from_dict(config).save(ws.runs_dir / run_id / "config.json")
    code, summary = execute_run(ws.runs_dir / run_id, ws)
    assert code == 0 and summary["images"]["train"] == 24


def test_the_real_pneumoniamnist_file_builds_a_chest_x_ray_demo(tmp_path):
    if not SHARED_PNEUMONIA.is_file():
        pytest.skip("../shared/data/pneumoniamnist_train_val.npz is not here (a user's clone)")
    ws = Workspace.open(tmp_path / "ws")
    built = build_real_demo(ws, SHARED_PNEUMONIA, train_per_class=15, test_per_class=10)
    assert built["task"] == "pneumonia-binary" and (built["n_train"], built["n_test"]) == (30, 20)
    test = ws.get_dataset(built["test_set_id"])
    assert test["meta"]["demo_real"]["held_out_split"] == "val"  # the file has train and val only
