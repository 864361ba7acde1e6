"""Patient-level stratified splits, limited subsets and split leakage checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data import Dataset
from core.data.splits import limited_subset, patient_overlap, patient_split
from core.errors import InputError


def _ds(n_patients=40, per_patient=3, seed=0, with_patients=True):
    """A table-only dataset (no files needed for splitting): CNV-heavy, several images per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = ["CNV", "CNV", "DME", "NORMAL"][p % 4]
        for k in range(int(rng.integers(1, per_patient + 1))):
            rows.append({"image_id": f"{label}-{p}-{k}", "path": f"/none/{p}-{k}.png", "label": label,
                         "patient_id": str(p) if with_patients else None, "split": None})
    return Dataset(pd.DataFrame(rows), "oct-kermany", source="synthetic table")


def test_patient_split_keeps_patients_whole_and_stratifies():
    ds = _ds()
    train, val = patient_split(ds, val_fraction=0.25, seed=1)
    assert len(train) + len(val) == len(ds) and not set(train) & set(val)
    pt = ds.table["patient_id"]
    assert not set(pt.iloc[train]) & set(pt.iloc[val])
    labels = ds.table["label"]
    for cls in ("CNV", "DME", "NORMAL"):
        n = (labels == cls).sum()
        share = (labels.iloc[val] == cls).sum() / n
        assert 0.1 <= share <= 0.45, (cls, share)


def test_patient_split_is_seeded():
    ds = _ds()
    a = patient_split(ds, 0.2, seed=3)
    b = patient_split(ds, 0.2, seed=3)
    c = patient_split(ds, 0.2, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_split_without_patient_ids_is_per_image():
    ds = _ds(with_patients=False)
    train, val = patient_split(ds, 0.5, seed=0)
    assert abs(len(val) - len(ds) / 2) <= 3


def test_split_rejects_bad_fraction():
    with pytest.raises(InputError, match="val_fraction"):
        patient_split(_ds(), 1.0)
    with pytest.raises(InputError, match="cannot be split"):
        patient_split(_ds().subset([0]), 0.2)


def test_limited_subset_per_class_exact_and_patient_grouped():
    ds = _ds(n_patients=60)
    rows = limited_subset(ds, per_class=10, seed=0)
    chosen = ds.table.iloc[rows]
    assert chosen["label"].value_counts().to_dict() == {"CNV": 10, "DME": 10, "NORMAL": 10}
    full = ds.table.groupby("patient_id").size()
    for _, group in chosen.groupby("label"):
        sizes = group.groupby("patient_id").size()
        partial = (sizes < full[sizes.index]).sum()
        assert partial <= 1  # whole patients, except the one cut to hit the count
    assert np.array_equal(rows, limited_subset(ds, per_class=10, seed=0))
    assert not np.array_equal(rows, limited_subset(ds, per_class=10, seed=1))


def test_limited_subset_fraction_and_small_classes():
    ds = _ds()
    counts = ds.table["label"].value_counts()
    rows = limited_subset(ds, fraction=0.5, seed=0)
    got = ds.table["label"].iloc[rows].value_counts()
    for cls, n in counts.items():
        assert got[cls] == max(1, round(0.5 * n))
    everything = limited_subset(ds, per_class=10_000)
    assert np.array_equal(everything, np.arange(len(ds)))


def test_limited_subset_arguments():
    with pytest.raises(InputError, match="exactly one"):
        limited_subset(_ds(), per_class=5, fraction=0.5)
    with pytest.raises(InputError, match="exactly one"):
        limited_subset(_ds())
    with pytest.raises(InputError, match="per_class"):
        limited_subset(_ds(), per_class=0)
    with pytest.raises(InputError, match="fraction"):
        limited_subset(_ds(), fraction=1.5)


def test_patient_overlap():
    table = pd.DataFrame({"image_id": list("abcd"), "path": list("abcd"), "label": ["CNV"] * 4,
                          "patient_id": ["1", "1", "2", "3"], "split": ["train", "test", "train", "test"]})
    ds = Dataset(table, "oct-kermany")
    assert patient_overlap(ds) == {("train", "test"): ["1"]}
    assert patient_overlap(ds.subset([0, 2, 3])) == {}
