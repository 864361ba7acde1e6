"""Dataset: table contract, label views, subsets, class counts and the content fingerprint."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from core.data import Dataset, load_dataset
from core.errors import InputError
from tests._data_files import image_folder, write_image


@pytest.fixture
def oct_ds(tmp_path):
    root = tmp_path / "oct"
    image_folder(root, {"CNV": 2, "DME": 1, "NORMAL": 3}, split="train", name=lambda c, i: f"{c}-{i}-1.png")
    image_folder(root, {"CNV": 1, "NORMAL": 1}, split="test", name=lambda c, i: f"{c}-{50 + i}-1.png")
    return load_dataset(root)


def test_table_columns_and_types(oct_ds):
    t = oct_ds.table
    assert t.columns.tolist()[:5] == ["image_id", "path", "label", "patient_id", "split"]
    assert t["image_id"].is_unique and len(oct_ds) == 8
    assert set(t["label"]) <= set(oct_ds.task.classes)
    assert isinstance(oct_ds.source, str) and oct_ds.problems == []


def test_label_views(oct_ds):
    idx = oct_ds.label_indices()
    assert idx.dtype == np.int64
    assert [oct_ds.task.classes[i] for i in idx] == oct_ds.table["label"].tolist()
    onehot = oct_ds.label_matrix()
    assert onehot.shape == (8, 4) and (onehot.sum(axis=1) == 1).all()
    assert (onehot.argmax(axis=1) == idx).all()


def test_class_counts_include_empty_classes(oct_ds):
    counts = oct_ds.class_counts()
    assert counts.columns.tolist() == ["CNV", "DME", "DRUSEN", "NORMAL"]
    assert counts.index.tolist() == ["train", "test"]
    assert counts.loc["train"].tolist() == [2, 1, 0, 3]
    assert counts.loc["test"].tolist() == [1, 0, 0, 1]


def test_subset_and_split_named(oct_ds):
    test = oct_ds.split_named("test")
    assert len(test) == 2 and set(test.table["split"]) == {"test"}
    sub = oct_ds.subset([5, 0])
    assert sub.table["image_id"].tolist() == oct_ds.table["image_id"].iloc[[5, 0]].tolist()
    assert sub.task is oct_ds.task and sub.source == oct_ds.source
    with pytest.raises(InputError, match="no 'val' split; splits present: \\['train', 'test'\\]"):
        oct_ds.split_named("val")
    with pytest.raises(InputError, match="out of range"):
        oct_ds.subset([99])


def test_patients(oct_ds):
    assert oct_ds.patients() == ["0", "1", "2", "50"]


def test_load_image(oct_ds):
    im = oct_ds.load_image(3)
    assert im.mode == "L" and im.size == (24, 20)


def test_fingerprint_is_content_based(tmp_path, oct_ds):
    fp = oct_ds.fingerprint
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert oct_ds.fingerprint == fp  # cached
    # Same bytes and labels elsewhere (another folder name, rows shuffled) -> same fingerprint.
    copy = tmp_path / "copy"
    shutil.copytree(oct_ds.root, copy)
    assert load_dataset(copy).fingerprint == fp
    assert oct_ds.subset(np.arange(len(oct_ds))[::-1]).fingerprint == fp
    # Any change of image bytes or of a label changes it.
    assert oct_ds.subset(range(7)).fingerprint != fp
    relabelled = oct_ds.table.copy()
    relabelled.loc[0, "label"] = "DRUSEN"
    assert Dataset(relabelled, oct_ds.task).fingerprint != fp
    target = copy / "train" / "CNV" / "CNV-0-1.png"
    write_image(target, seed=999)
    assert load_dataset(copy).fingerprint != fp


def _table(**overrides):
    base = {"image_id": ["a", "b"], "path": ["/x/a.png", "/x/b.png"], "label": ["CNV", "DME"],
            "patient_id": [None, "p"], "split": [None, "train"]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_constructor_validates_the_table():
    ds = Dataset(_table(), "oct-kermany", source="t")
    assert ds.table["patient_id"].tolist() == [None, "p"] and ds.table["split"].tolist() == [None, "train"]
    with pytest.raises(InputError, match="image id 'a' appears 2 times"):
        Dataset(_table(image_id=["a", "a"]), "oct-kermany", source="t")
    with pytest.raises(InputError, match="unknown labels \\['GLAUCOMA'\\]"):
        Dataset(_table(label=["CNV", "GLAUCOMA"]), "oct-kermany", source="t")
    with pytest.raises(InputError, match="unknown split names \\['holdout'\\]"):
        Dataset(_table(split=["holdout", None]), "oct-kermany", source="t")
    with pytest.raises(InputError, match="lacks columns \\['patient_id'\\]"):
        Dataset(_table().drop(columns="patient_id"), "oct-kermany", source="t")
    with pytest.raises(InputError, match="label_matrix"):
        Dataset(_table(label=["", ""], **{c: [0, 1] for c in
                ("DR", "ARMD", "MH", "DN", "MYA", "BRVO", "TSLN", "ODC")}), "fundus-multilabel").label_indices()


def test_images_by_id(oct_ds):
    first = str(oct_ds.table["image_id"].iat[0])
    last = str(oct_ds.table["image_id"].iat[-1])
    assert oct_ds.row_of(first) == 0 and oct_ds.row_of(last) == len(oct_ds) - 1
    assert oct_ds.row_of("no-such-image") is None
    assert oct_ds.image_by_id(last).size == oct_ds.load_image(len(oct_ds) - 1).size
    with pytest.raises(InputError, match="no-such-image"):
        oct_ds.image_by_id("no-such-image")
