"""Readers on the real layouts in ../shared/data (Kermany OCT2017 and chest X-ray samples, MedMNIST .npz)."""

from __future__ import annotations

import numpy as np

from core.data import load_dataset
from core.data.splits import patient_overlap, patient_split
from core.data.torch_data import ImageTableDataset


def test_oct2017_sample(shared_data):
    ds = load_dataset(shared_data / "oct2017_sample")
    assert ds.task.name == "oct-kermany" and len(ds) == 22
    assert ds.class_counts().loc["unsplit"].to_dict() == {"CNV": 4, "DME": 6, "DRUSEN": 6, "NORMAL": 6}
    t = ds.table.set_index("image_id")
    assert t.loc["DME/DME-30521-10.jpeg", "patient_id"] == "30521"
    assert len(ds.patients()) == 15
    im = ds.load_image(0)
    assert im.mode == "L" and im.size == (512, 496)


def test_chest_xray_sample(shared_data):
    ds = load_dataset(shared_data / "chest_xray_sample")
    assert ds.task.name == "cxr-kermany" and len(ds) == 750 and ds.problems == []
    assert ds.class_counts().loc["train"].to_dict() == {"NORMAL": 250, "BACTERIAL": 250, "VIRAL": 250}
    assert ds.table["patient_id"].notna().all()
    bacterial = ds.table[ds.table["label"] == "BACTERIAL"]
    assert bacterial["image_id"].str.contains("_bacteria_").all()
    assert bacterial["patient_id"].str.fullmatch(r"person\d+").all()
    train, val = patient_split(ds, val_fraction=0.2, seed=0)
    assert not set(ds.table["patient_id"].iloc[train]) & set(ds.table["patient_id"].iloc[val])
    assert 0.15 < len(val) / len(ds) < 0.25


def test_retinamnist(shared_data):
    ds = load_dataset(shared_data / "retinamnist.npz")
    assert ds.task.name == "dr-grading"
    assert {s: int(n) for s, n in ds.class_counts().sum(axis=1).items()} == {"train": 1080, "val": 120, "test": 400}
    data = ImageTableDataset(ds.split_named("val"))
    x, y = data[0]
    assert tuple(x.shape) == (3, 28, 28) and 0 <= y <= 4
    assert patient_overlap(ds) == {}


def test_pneumoniamnist(shared_data):
    ds = load_dataset(shared_data / "pneumoniamnist_train_val.npz")
    assert ds.task.kind == "binary" and ds.task.classes == ("NORMAL", "PNEUMONIA")
    counts = ds.class_counts()
    assert counts.loc["train"].tolist() == [388, 3494] and counts.loc["val"].sum() == 524
    with np.load(shared_data / "pneumoniamnist_train_val.npz") as raw:
        assert np.array_equal(np.asarray(ds.load_image(5)), raw["train_images"][5])
