"""Simulated demo readers: labelled simulated, seeded, and reaching their stated sensitivity/specificity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.readers import (DEFAULT_PROFILES, SimulatedProfile, is_simulated, list_readings, simulate_readers,
                          simulated_profile, store_simulated_readers)

OCT = ["CNV", "DME", "DRUSEN", "NORMAL"]


def _truth(n_per_class: int, classes=OCT) -> pd.DataFrame:
    labels = [c for c in classes for _ in range(n_per_class)]
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(len(labels))], "label": labels})


def test_profiles_are_named_and_prefixed():
    names = {p.name for p in DEFAULT_PROFILES}
    assert {"Simulated specialist", "Simulated cautious over-referrer", "Simulated generalist"} <= names
    readings = simulate_readers(_truth(5), "oct-kermany")
    assert readings["reader_id"].map(is_simulated).all()
    assert set(readings.columns) == {"reader_id", "image_id", "label", "seconds"}
    assert (readings["seconds"] > 0).all()
    assert simulated_profile("SIMULATED-specialist").sensitivity == 0.95
    assert simulated_profile("dr_a") is None
    with pytest.raises(InputError, match="must start with"):
        SimulatedProfile("Someone", "someone", 0.9, 0.9)
    with pytest.raises(InputError, match="sensitivity must be between 0 and 1"):
        SimulatedProfile("Simulated x", "SIMULATED-x", 1.2, 0.9)


def test_seeded():
    a = simulate_readers(_truth(10), "oct-kermany", seed=1)
    b = simulate_readers(_truth(10), "oct-kermany", seed=1)
    c = simulate_readers(_truth(10), "oct-kermany", seed=2)
    assert a.equals(b) and not a["label"].equals(c["label"])


def test_stated_sensitivity_and_specificity_are_reached():
    truth = _truth(2500)  # 5000 urgent (CNV, DME), 5000 not (DRUSEN, NORMAL)
    readings = simulate_readers(truth, "oct-kermany", seed=0).merge(truth, on="image_id",
                                                                    suffixes=("", "_true"))
    urgent = {"CNV", "DME"}
    for profile in DEFAULT_PROFILES:
        mine = readings[readings["reader_id"] == profile.reader_id]
        is_urgent = mine["label_true"].isin(urgent)
        called = mine["label"].isin(urgent)
        sens = called[is_urgent].mean()
        spec = (~called[~is_urgent]).mean()
        # Binomial standard error with 5000 cases is at most 0.007: four of them as the tolerance.
        assert abs(sens - profile.sensitivity) < 0.03, profile.name
        assert abs(spec - profile.specificity) < 0.03, profile.name
    # Confusions inside the urgent group happen too (CNV called DME), at about 1 - exact_class_rate.
    generalist = readings[readings["reader_id"] == "SIMULATED-generalist"]
    cnv = generalist[generalist["label_true"] == "CNV"]
    share_dme = (cnv["label"] == "DME").mean()
    assert 0.1 < share_dme < 0.3


def test_views_that_leave_classes_out_and_ordinal_grades():
    truth = _truth(400, classes=("0", "1", "2", "3", "4"))
    readings = simulate_readers(truth, "dr-grading", seed=0).merge(truth, on="image_id", suffixes=("", "_true"))
    spec = readings[readings["reader_id"] == "SIMULATED-specialist"]
    wrong = spec[spec["label"] != spec["label_true"]]
    distance = (wrong["label"].astype(int) - wrong["label_true"].astype(int)).abs()
    assert distance.mean() < 2.0  # nearer grades are the likelier mistakes
    cxr = simulate_readers(_truth(50, ("NORMAL", "BACTERIAL", "VIRAL")), "cxr-kermany", view="bacterial vs viral")
    assert set(cxr["label"]) <= {"NORMAL", "BACTERIAL", "VIRAL"}


def test_bad_inputs():
    with pytest.raises(InputError, match="multi-label"):
        simulate_readers(_truth(2), "fundus-multilabel")
    with pytest.raises(InputError, match="image_id and label"):
        simulate_readers(pd.DataFrame({"x": [1]}), "oct-kermany")
    with pytest.raises(InputError, match="unknown label"):
        simulate_readers(pd.DataFrame({"image_id": ["a"], "label": ["tumour"]}), "oct-kermany")


def test_store_is_repeatable(workspace):
    truth = _truth(3)
    store_simulated_readers(workspace, "ts", truth, "oct-kermany")
    store_simulated_readers(workspace, "ts", truth, "oct-kermany")
    stored = list_readings(workspace, "ts")
    assert len(stored) == len(DEFAULT_PROFILES) * len(truth)
    assert set(stored["source"]) == {"simulated"}
    assert np.isfinite(stored["seconds"]).all()
