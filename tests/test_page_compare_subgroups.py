"""AppTest of Compare runs by subgroup: a model that guesses for men beside one that is good for everyone, on a
test set whose manifest has a sex column (own workspace)."""

from __future__ import annotations

import json

import numpy as np

from core.infer.predictions import read_predictions, write_predictions
from core.store import Workspace
from core.train.config import RunConfig
from tests._evaluation_data import predictions_table, synthetic_probabilities
from tests._subgroup_data import TASK, subgroup_workspace
from tests.apptest import open_page

PAGE = "../pages/compare.py"
GOOD = "Model good for everyone"


def _second_run(ids: dict) -> str:
    """A run whose score separates the classes for every image, with predictions on the same test set."""
    ws = Workspace.open(ids["root"])
    first, meta = read_predictions(ids["path"])
    truth = np.array([TASK.classes.index(c) for c in first["label"]])
    frame = predictions_table(TASK, truth, synthetic_probabilities(TASK, truth, 4.0, seed=7))
    frame["image_id"], frame["patient_id"] = first["image_id"].to_numpy(), first["patient_id"].to_numpy()
    cfg = RunConfig(data="", task=TASK.to_dict(), name=GOOD, backbone="synthetic-predictions", pretrained=False,
                    seed=1)
    run_id = ws.create_run(config=cfg.to_dict(), name=GOOD)
    cfg.save(ws.runs_dir / run_id / "config.json")
    (ws.runs_dir / run_id / "summary.json").write_text(json.dumps({"images": {"train": 1000}, "synthetic": True}))
    ws.update_run(run_id, status="succeeded")
    path = ws.predictions_path(run_id, ids["test_set_id"])
    write_predictions(frame, path, {**meta, "run_id": run_id})
    ws.record_predictions(run_id, ids["test_set_id"], path, len(frame))
    return run_id


def test_each_runs_auc_per_subgroup(tmp_path, monkeypatch):
    ids = subgroup_workspace(tmp_path / "ws")
    _second_run(ids)
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, test_set_id=ids["test_set_id"])
    column = at.selectbox(key="cmp_subgroup_column")
    assert column.options[:2] == ["sex", "age"] and "image width" in column.options
    column.set_value("sex").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(f.value for f in at.dataframe if "positives / negatives" in f.value.columns)
    assert table["subgroup"].tolist() == ["F", "M"] and table["images"].tolist() == [120, 120]
    fails, good = "AUC: Model that fails men", f"AUC: {GOOD}"
    assert {fails, good} <= set(table.columns)

    def auc(text: str) -> float:
        return float(text.split(" ")[0])

    women, men = table.iloc[0], table.iloc[1]
    assert auc(women[fails]) > 0.95 and auc(women[good]) > 0.95
    assert 0.3 < auc(men[fails]) < 0.7 and auc(men[good]) > 0.95  # the first model guesses for men only
    assert all("(" in str(t) for t in table[fails])  # DeLong intervals shown
    assert any("DeLong's 95% interval" in c.value for c in at.caption)
