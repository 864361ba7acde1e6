"""Readers against the model per subgroup, and several runs per subgroup (core.report.subgroups), on built data."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.readers import simulate_readers
from core.report.subgroups import reader_subgroup_table, run_subgroup_aucs
from tests._evaluation_data import (
    predictions_table,
    synthetic_probabilities,
    synthetic_truth,
)
from tests._subgroup_data import TASK


def _frame(n=200, seed=0):
    truth = synthetic_truth(TASK, n, seed)
    frame = predictions_table(TASK, truth, synthetic_probabilities(TASK, truth, 4.0, seed=seed + 1))
    frame["image_id"] = [f"img{i:04d}.png" for i in range(n)]
    return frame, truth


def test_readers_per_subgroup_only_on_the_cases_each_graded():
    frame, _ = _frame()
    sites = np.where(np.arange(len(frame)) < 150, "A", "B")
    readings = simulate_readers(frame[["image_id", "label"]], TASK)
    # One reader graded only site A's images: they get no row for site B.
    first = readings["reader_id"].unique()[0]
    readings = readings[~((readings["reader_id"] == first) & readings["image_id"].isin(frame["image_id"][150:]))]
    table = reader_subgroup_table(readings, frame, TASK, sites, view=TASK.default_view(), threshold=0.5)
    assert table.groupby("subgroup")["reader"].nunique().to_dict() == {"A": 3, "B": 2}
    assert set(table.loc[table["subgroup"] == "A", "images"]) == {150}
    assert set(table.loc[table["subgroup"] == "B", "images"]) == {50}
    assert table["reader sensitivity_low"].le(table["reader sensitivity"]).all()
    with pytest.raises(InputError, match="no reader graded a case of this test set's subgroups"):
        reader_subgroup_table(readings.assign(image_id="elsewhere.png"), frame, TASK, sites,
                              view=TASK.default_view(), threshold=0.5)
    with pytest.raises(InputError, match="3 subgroup values for 200 predictions"):
        reader_subgroup_table(readings, frame, TASK, ["A", "B", "A"], view=TASK.default_view(), threshold=0.5)


def test_runs_per_subgroup_find_the_run_that_fails_one_group():
    frame, truth = _frame()
    group = np.where(np.arange(len(frame)) % 2 == 0, "even", "odd")
    guessing = np.where((group == "odd")[:, None], synthetic_probabilities(TASK, truth, 0.0, seed=9),
                        synthetic_probabilities(TASK, truth, 4.0, seed=3))
    probs = {"good": frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(), "fails odd": guessing}
    calls = {name: p.argmax(axis=1) for name, p in probs.items()}
    table = run_subgroup_aucs(TASK, truth, probs, calls, group, "parity", view=TASK.default_view())
    auc = table.set_index(["run", "subgroup"])["auc"]
    assert auc["good", "even"] > 0.95 and auc["good", "odd"] > 0.95 and auc["fails odd", "even"] > 0.95
    assert 0.3 < auc["fails odd", "odd"] < 0.7
    assert (table["auc_low"] <= table["auc"]).all() and (table["auc"] <= table["auc_high"]).all()
    with pytest.raises(InputError, match="2 subgroup values for 200 images"):
        run_subgroup_aucs(TASK, truth, probs, calls, ["a", "b"], "parity", view=TASK.default_view())
