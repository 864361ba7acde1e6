"""AppTest of the Performance page's Subgroups tab for an adapted run: the source run's sensitivity and specificity
per subgroup beside the adapted run's (own workspace: a source that guesses for men, an adapted run that does not)."""

from __future__ import annotations

import json

import numpy as np

from core.infer.predictions import read_predictions, write_predictions
from core.report.subgroups import shift_source
from core.store import Workspace
from core.train.config import RunConfig
from tests._evaluation_data import predictions_table, synthetic_probabilities
from tests._subgroup_data import TASK, subgroup_workspace
from tests.apptest import open_page

PAGE = "../pages/performance.py"
ADAPTED = "Model that fails men (adapted to the site)"


def _adapted_run(ids: dict, key: str = "adaptation", with_predictions: bool = True) -> str:
    """A run whose card says it was derived from the workspace's run by `key`; its score separates the classes for
    everyone."""
    ws = Workspace.open(ids["root"])
    first, meta = read_predictions(ids["path"])
    truth = np.array([TASK.classes.index(c) for c in first["label"]])
    cfg = RunConfig(data="", task=TASK.to_dict(), name=ADAPTED, backbone="synthetic-predictions", pretrained=False,
                    seed=1)
    run_id = ws.create_run(config=cfg.to_dict(), name=ADAPTED)
    folder = ws.runs_dir / run_id
    cfg.save(folder / "config.json")
    (folder / "summary.json").write_text(json.dumps({"images": {"train": 1000}, "synthetic": True}))
    (folder / "checkpoint").mkdir(parents=True, exist_ok=True)
    card = {"backbone": "synthetic-predictions", "num_classes": len(TASK.classes), "head": "linear",
            "task": TASK.to_dict(), "classes": list(TASK.classes), key: {"source_run": ids["run_id"]},
            "derived_from": {"run_id": ids["run_id"], "temperature": 1.0}}
    (folder / "checkpoint" / "model_card.json").write_text(json.dumps(card))
    ws.update_run(run_id, status="succeeded")
    if with_predictions:
        frame = predictions_table(TASK, truth, synthetic_probabilities(TASK, truth, 4.0, seed=7))
        frame["image_id"], frame["patient_id"] = first["image_id"].to_numpy(), first["patient_id"].to_numpy()
        path = ws.predictions_path(run_id, ids["test_set_id"])
        write_predictions(frame, path, {**meta, "run_id": run_id})
        ws.record_predictions(run_id, ids["test_set_id"], path, len(frame))
    return run_id


def test_shift_source_reads_the_card():
    assert shift_source({"adaptation": {"x": 1}, "derived_from": {"run_id": "run-a"}}) == ("run-a",
                                                                                          "adapted to the site")
    assert shift_source({"recalibration": {"x": 1}, "derived_from": {"run_id": "run-a"}}) == ("run-a",
                                                                                             "recalibrated")
    assert shift_source({"derived_from": {"run_id": "run-a"}}) is None  # derived, but neither step
    assert shift_source({"adaptation": {"x": 1}}) is None and shift_source(None) is None


def test_adapted_run_shows_the_calls_before_and_after_per_subgroup(tmp_path, monkeypatch):
    ids = subgroup_workspace(tmp_path / "ws")
    adapted = _adapted_run(ids)
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, run_id=adapted, test_set_id=ids["test_set_id"])
    at.selectbox(key="perf_subgroup_column").set_value("sex").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("this run was adapted to the site from Model that fails men" in m.value for m in at.markdown)
    table = next(f.value for f in at.dataframe if "sensitivity before" in f.value.columns)
    assert table["subgroup"].tolist() == ["F", "M"] and table["images"].tolist() == [120, 120]

    def point(text: str) -> float:
        return float(text.split(" ")[0].rstrip("%")) / (100 if "%" in text else 1)

    men = table.iloc[1]
    # Before, the source guessed for men; after, the adapted run separates them: sensitivity and specificity rise.
    assert point(men["sensitivity before"]) < 0.75 and point(men["sensitivity after"]) > 0.9
    assert point(men["specificity before"]) < 0.75 and point(men["specificity after"]) > 0.9
    assert men["sensitivity change"].startswith("+") and men["calls changed"] > 20
    assert "(" in men["sensitivity before"]  # Wilson interval shown
    assert any("before = the source run, after = this run" in c.value for c in at.caption)


def test_adapted_run_without_source_predictions_says_so(tmp_path, monkeypatch):
    ids = subgroup_workspace(tmp_path / "ws")
    ws = Workspace.open(ids["root"])
    cfg = RunConfig(data="", task=TASK.to_dict(), name="Source never run on this test set",
                    backbone="synthetic-predictions", pretrained=False, seed=2)
    bare = ws.create_run(config=cfg.to_dict(), name="Source never run on this test set")
    ws.update_run(bare, status="succeeded")
    recalibrated = _adapted_run({**ids, "run_id": bare}, key="recalibration")
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = open_page(PAGE, run_id=recalibrated, test_set_id=ids["test_set_id"])
    at.selectbox(key="perf_subgroup_column").set_value("sex").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("this run was recalibrated from Source never run on this test set" in m.value for m in at.markdown)
    assert any(i.value.startswith("The source run has no predictions on this test set") for i in at.info)
    assert not any("sensitivity before" in f.value.columns for f in at.dataframe)
