"""Real chest X-rays (Kermany): train on some patients, evaluate pneumonia vs normal on the other patients."""

import numpy as np
import pytest

from core.data import Dataset, load_dataset
from core.data.splits import patient_split
from core.train import RunConfig, run_training


def held_out_by_patient(ds: Dataset, fraction: float = 0.3, seed: int = 0) -> Dataset:
    """The same images with a 'test' split of whole patients (never seen in training or validation)."""
    _, test_rows = patient_split(ds, fraction, seed=seed)
    table = ds.table.copy()
    table["split"] = None
    table.loc[table.index[test_rows], "split"] = "test"
    return Dataset(table, ds.task, ds.source, ds.problems, ds.root, ds.max_pixels)


@pytest.mark.slow
def test_pneumonia_vs_normal_on_held_out_patients(shared_data, workspace, tmp_path):
    ds = load_dataset(shared_data / "chest_xray_sample")
    assert ds.task.name == "cxr-kermany"
    split = held_out_by_patient(ds)
    train_patients = set(split.table.loc[split.table["split"].isna(), "patient_id"])
    test_patients = set(split.table.loc[split.table["split"] == "test", "patient_id"])
    assert not train_patients & test_patients
    # 160 px keeps the test to about a minute on two cores; the closing note's figures use the default 224 px.
    cfg = RunConfig(data=str(shared_data / "chest_xray_sample"), mode="features", binary="pneumonia vs normal",
                    image_size=160, balance="weights", epochs=40)
    summary = run_training(cfg, tmp_path / "run", workspace, dataset=split)
    test = summary["test"]
    assert test["n"] == int((split.table["split"] == "test").sum())
    assert test["auroc"] > 0.85 and test["accuracy"] > 0.75, test
    assert np.isfinite(summary["val"]["auroc"])
