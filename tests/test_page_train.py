"""Train page (AppTest on the seeded workspace): form, run list, live panel, smoothing, a real tiny run."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.store import Workspace
from core.train import read_events, reconcile_runs
from tests.apptest import signed_in_app

FINISH_TIMEOUT_S = 300  # generous: the machine running the suite may be busy


def _page(select_run: str | None = None) -> AppTest:
    at = signed_in_app(timeout=120).run()
    if select_run:
        at.session_state["train_selected_run"] = select_run
    at.switch_page("../pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def _smoothed_loss(at: AppTest) -> list[float]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    trace = next(t for t in spec["data"] if t["name"] == "train (smoothed)")
    return trace["y"]


def _tiny_recipe(at: AppTest, epochs: int, name: str) -> None:
    """The 32 px test model with an Adam head on the CPU: a run that takes seconds per epoch."""
    at.selectbox(key="train_backbone_features").set_value("test_efficientnet").run()
    at.selectbox(key="train_head_fit").set_value("adam").run()
    at.number_input(key="train_epochs_features").set_value(epochs)
    at.number_input(key="train_size_test_efficientnet").set_value(32)
    at.selectbox(key="train_device").set_value("cpu")
    at.text_input(key="train_name").input(name)


def test_form_and_seeded_run(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    seeded = ws.get_run(own_seeded_workspace["run_id"])
    at = _page(select_run=seeded["id"])
    assert [t.value for t in at.title] == ["Train"]
    assert at.selectbox(key="train_dataset").value == own_seeded_workspace["dataset_id"]
    # Features mode offers the recipe study's winner first: the Lite0+1+2 feature ensemble.
    assert at.selectbox(key="train_backbone_features").value == "efficientnet_lite012"
    backbones = at.selectbox(key="train_backbone_features").options
    assert any("offline ImageNet weights" in o for o in backbones) and any("test model" in o for o in backbones)
    assert at.radio(key="train_mode").value == "features" and at.button(key="train_start")
    at.radio(key="train_mode").set_value("finetune").run()  # a frozen ensemble cannot be fine-tuned
    assert at.selectbox(key="train_backbone_finetune").value == "tf_efficientnet_lite0"
    assert not any("efficientnet_lite012" in o for o in at.selectbox(key="train_backbone_finetune").options)
    at.radio(key="train_mode").set_value("features").run()
    from core.train.devices import device_options

    assert at.selectbox(key="train_device").options == list(device_options().choices)
    if not device_options().cuda_available:
        assert "cuda" not in at.selectbox(key="train_device").options
        assert any("torch.cuda.is_available() is False" in c.value for c in at.caption)
    # The run table and the selected run's panel show its status and best metric.
    table = at.dataframe[0].value
    row = table[table["id"] == seeded["id"]].iloc[0]
    assert row["status"] == "succeeded" and row["best value"] == pytest.approx(seeded["best_metric"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "succeeded"
    assert metrics[f"Best {seeded['best_metric_name']}"] == f"{seeded['best_metric']:.4f}"
    # Cached predictions on the demo test set are offered as already computed.
    assert any("Already computed" in s.value for s in at.success)


def test_smoothing_slider_changes_the_curves(own_seeded_workspace):
    at = _page(select_run=own_seeded_workspace["run_id"])
    assert any("smoothing 0.6" in t for t in _chart_titles(at))
    before = _smoothed_loss(at)
    at.slider(key="train_smoothing").set_value(0.0).run()
    assert any("smoothing 0 (" in t for t in _chart_titles(at))
    after = _smoothed_loss(at)
    assert len(before) == len(after) and before != after


def test_failed_run_shows_its_error(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    run_id = ws.create_run(config={"backbone": "test_resnet", "mode": "features", "task": "oct-kermany"},
                           name="broken run")
    ws.update_run(run_id, status="failed", error="InputError: data folder vanished\ntraceback line")
    at = _page(select_run=run_id)
    assert any("failed" in e.value for e in at.error)
    assert any("data folder vanished" in c.value for c in at.code)
    table = at.dataframe[0].value
    assert table[table["id"] == run_id].iloc[0]["error"] == "InputError: data folder vanished"


def test_start_a_tiny_run_and_follow_it(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    at = _page()
    at.selectbox(key="train_framing").set_value("letterbox")
    at.selectbox(key="train_operating_rule").set_value("sensitivity").run()
    at.slider(key="train_target_sensitivity").set_value(0.9)
    _tiny_recipe(at, epochs=1, name="tiny page run")
    before = {r["id"] for r in ws.list_runs()}
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run,) = [r for r in ws.list_runs() if r["id"] not in before]
    assert run["status"] in ("queued", "running", "succeeded") and run["name"] == "tiny page run"
    assert run["backbone"] == "test_efficientnet" and run["config"]["epochs"] == 1
    assert run["config"]["image_size"] == 32 and run["config"]["device"] == "cpu"
    assert (run["config"]["framing"], run["config"]["head_fit"]) == ("letterbox", "adam")
    assert (run["config"]["operating_rule"], run["config"]["target_sensitivity"]) == ("sensitivity", 0.9)
    assert at.selectbox(key="train_selected_run").value == run["id"]
    assert any("started" in s.value for s in at.success)
    deadline = time.time() + FINISH_TIMEOUT_S
    while time.time() < deadline:
        reconcile_runs(ws)
        if ws.get_run(run["id"])["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    final = ws.get_run(run["id"])
    # One epoch of a 32 px test model takes seconds; cancelling is tested in tests/test_train_runs.py.
    assert final["status"] == "succeeded", final["error"] or final["status"]
    at.run()
    assert {m.label: m.value for m in at.metric}["Status"] == "succeeded"
    assert final["best_metric"] is not None and at.get("plotly_chart")


def test_demo_run_config_is_launchable(own_seeded_workspace, workspace):
    from core.errors import InputError
    from core.train.config import RunConfig
    from core.train.demo import demo_run_config

    cfg = RunConfig.from_dict(demo_run_config(Workspace.open(own_seeded_workspace["root"])))
    assert cfg.backbone == "tf_efficientnet_lite0" and cfg.mode == "features" and cfg.pretrained
    assert cfg.dataset_id == own_seeded_workspace["dataset_id"] and Path(cfg.data).is_dir()
    assert cfg.task["name"] == "oct-kermany"
    with pytest.raises(InputError, match="demo is not registered"):
        demo_run_config(workspace)  # a fresh workspace: no demo yet


def test_device_options_follow_torch():
    import torch

    from core.train.devices import device_options

    options = device_options()
    assert options.choices[:1] == ("auto",) and "cpu" in options.choices
    assert ("cuda" in options.choices) == torch.cuda.is_available() == options.cuda_available


def test_the_no_cuda_help_says_what_is_true():
    # It said "a CPU-only PyTorch build 2.14.1+cu130" of a build with CUDA 13.0 support that found no GPU.
    from core.train.devices import no_cuda_reason

    built = no_cuda_reason("2.14.1+cu130", "13.0")
    assert "PyTorch 2.14.1 is built with CUDA 13.0 support, but no CUDA device was found" in built
    assert "CPU-only" not in built and "+cu130" not in built
    assert "PyTorch 2.14.1 is a CPU-only build" in no_cuda_reason("2.14.1+cpu", None)


def test_add_a_training_dataset_from_a_server_folder(own_seeded_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path))  # server folders only under a data root
    from tests._data_files import image_folder

    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "clinic", {"NORMAL": 3, "CNV": 3}, split="train")
    image_folder(tmp_path / "clinic", {"NORMAL": 1, "CNV": 1}, split="test")
    at = _page()
    at.text_input(key="train_add_folder").input(str(folder)).run()
    at.button(key="train_add_folder_button").click().run()
    assert not at.exception and not at.error, [c.value for c in at.code]
    added = ws.get_dataset(at.selectbox(key="train_dataset").value)
    assert added["role"] == "dataset" and added["n_images"] == 8 and added["meta"]["splits"] == ["train", "test"]
    assert not at.warning  # selecting the new dataset raises no widget-state warning
    # A finished run on it offers its test split as a test set (listed first for that run).
    run_id = ws.create_run(config={"backbone": "test_resnet", "mode": "features", "task": added["task"],
                                   "dataset_id": added["id"]}, name="finished run on clinic data")
    ws.update_run(run_id, status="succeeded")
    at.run()
    at.selectbox(key="train_selected_run").set_value(run_id).run()
    at.button(key="train_register_split").click().run()
    assert not at.exception and not at.error, [c.value for c in at.code]
    (split_set,) = [t for t in ws.list_datasets(role="test_set") if t["meta"].get("parent_dataset") == added["id"]]
    assert split_set["n_images"] == 2 and split_set["meta"]["split"] == "test"
    assert at.selectbox(key=f"train_test_set_{run_id}").value == split_set["id"]
    assert "train_register_split" not in [b.key for b in at.button]


def test_a_second_click_on_start_is_refused_and_names_the_first_run(own_seeded_workspace):
    from core.train import cancel_run

    ws = Workspace.open(own_seeded_workspace["root"])
    at = _page()
    _tiny_recipe(at, epochs=1000, name="clicked twice")
    before = {r["id"] for r in ws.list_runs()}
    at.button(key="train_start").click().run()
    (first,) = [r["id"] for r in ws.list_runs() if r["id"] not in before]
    try:
        at.button(key="train_start").click().run()
        assert not at.exception
        assert [r["id"] for r in ws.list_runs() if r["id"] not in before] == [first]  # no second run
        assert any("already on its way" in e.value for e in at.error)
        assert any(first in c.value and "already" in c.value for c in at.code)
        assert at.selectbox(key="train_selected_run").value == first
    finally:
        cancel_run(first, ws)
        deadline = time.time() + FINISH_TIMEOUT_S  # leave no training process behind
        while reconcile_runs(ws) is not None and ws.get_run(first)["status"] in ("queued", "running") \
                and time.time() < deadline:
            time.sleep(0.5)


def test_rename_archive_and_delete_runs_with_confirmation(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    seeded = own_seeded_workspace["run_id"]  # has predictions: deleting it archives it
    spare = ws.create_run(config={"backbone": "test_resnet", "mode": "features", "task": "oct-kermany"},
                          name="cancelled duplicate")
    ws.update_run(spare, status="cancelled")
    at = _page(select_run=spare)
    assert at.button(key=f"train_manage_delete_{spare}").disabled  # nothing happens before the confirmation
    at.text_input(key=f"train_manage_name_{spare}").input("  spare  run ").run()
    at.button(key=f"train_manage_rename_{spare}").click().run()
    assert ws.get_run(spare)["name"] == "spare run" and any("Renamed" in s.value for s in at.success)
    at.checkbox(key=f"train_manage_confirm_{spare}").check().run()
    at.button(key=f"train_manage_delete_{spare}").click().run()
    assert not at.exception and ws.get_run(spare) is None and not (ws.runs_dir / spare).exists()
    assert any("Deleted the run" in s.value for s in at.success)
    assert spare not in at.selectbox(key="train_selected_run").options
    assert spare not in list(at.dataframe[0].value["id"])

    at.selectbox(key="train_selected_run").set_value(seeded).run()
    at.checkbox(key=f"train_manage_confirm_{seeded}").check().run()
    at.button(key=f"train_manage_delete_{seeded}").click().run()
    assert not at.exception
    assert any("Archived the run instead" in s.value and "predictions" in s.value for s in at.success)
    assert ws.get_run(seeded)["archived"] and Path(ws.get_run(seeded)["run_dir"]).exists()
    assert [r["id"] for r in ws.list_runs()] == [] and any("No runs to show" in i.value for i in at.info)
    # The archived run is one click from coming back (it said "No runs yet" with no way back but the CLI).
    assert at.selectbox(key="train_restore_archived").value == seeded
    at.button(key="train_restore_restore").click().run()
    assert not at.exception and not ws.get_run(seeded)["archived"]
    assert at.selectbox(key="train_selected_run").options and any("Restored the run" in s.value for s in at.success)


def _live_panel_script(root: str, selected: str, shown: dict) -> None:
    import streamlit as st

    from core.store import Workspace
    from dashboard.training_ui import _panel_body

    st.session_state["script_runs"] = st.session_state.get("script_runs", 0) + 1
    if st.session_state["script_runs"] == 1:  # the page as rendered while the other run was still running
        _panel_body(Workspace.open(root), selected, 0.6, shown)
    st.text(f"script runs: {st.session_state['script_runs']}")


def test_the_live_panel_reruns_the_page_when_any_shown_run_changes_status(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    other = ws.create_run(config={"backbone": "test_resnet", "mode": "features", "task": "oct-kermany"},
                          name="first of a double click")
    ws.update_run(other, status="succeeded")  # it finished after the page listed it as running
    selected = ws.create_run(config={"backbone": "test_resnet", "mode": "features", "task": "oct-kermany"},
                             name="second, still queued")
    at = AppTest.from_function(_live_panel_script, args=(own_seeded_workspace["root"], selected,
                                                          {other: "running", selected: "queued"}),
                               default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    # The panel asked for a full rerun: the run table and Run selector are drawn again with "succeeded".
    assert at.text[-1].value == "script runs: 2"

    from dashboard.training_ui import changed_statuses

    assert changed_statuses(ws, {other: "succeeded", selected: "queued"}) == {}  # nothing new: no rerun
    assert changed_statuses(ws, {other: "running"}) == {other: "succeeded"}


def test_a_logistic_head_shows_its_cross_validation_curve_fold_by_fold(own_seeded_workspace):
    """The default head has no epochs: its live curve is held-out log loss by strength, filled in per fold."""
    ws = Workspace.open(own_seeded_workspace["root"])
    at = _page()
    _tiny_recipe(at, epochs=1, name="tiny logistic run")
    at.selectbox(key="train_head_fit").set_value("logistic").run()
    before = {r["id"] for r in ws.list_runs()}
    at.button(key="train_start").click().run()
    (run,) = [r for r in ws.list_runs() if r["id"] not in before]
    deadline = time.time() + FINISH_TIMEOUT_S
    while ws.get_run(run["id"])["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
        reconcile_runs(ws)
    assert ws.get_run(run["id"])["status"] == "succeeded", ws.get_run(run["id"])["error"]
    folds = read_events(ws.get_run(run["id"])["run_dir"], "cv_fold")
    assert [e["fold"] for e in folds] == list(range(1, folds[-1]["folds"] + 1)) and len(folds) >= 2
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Patient-grouped cross-validation of the logistic head" in _chart_titles(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    chosen = next(t for t in spec["data"] if t["name"] == "chosen")
    summary = json.loads((Path(ws.get_run(run["id"])["run_dir"]) / "summary.json").read_text())
    chosen_x = chosen["x"] if isinstance(chosen["x"], list) else np.frombuffer(  # plotly's typed-array form
        base64.b64decode(chosen["x"]["bdata"]), dtype=chosen["x"]["dtype"]).tolist()
    assert chosen_x == [summary["probe"]["C"]]
    assert not any("Curves appear" in c.value for c in at.caption)
    # The out-of-fold accuracy is the logistic head's validation accuracy (the panel showed "-").
    val = next(e for e in read_events(ws.get_run(run["id"])["run_dir"], "epoch") if e.get("split") == "val")
    assert {m.label: m.value for m in at.metric}["Validation accuracy"] == f"{val['accuracy']:.3f}"


def test_the_task_preset_follows_the_dataset(own_seeded_workspace, tmp_path, monkeypatch):
    # One "train_task" key for every dataset kept the previous dataset's preset after the dataset changed.
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path))
    from dashboard.training_ui import FROM_DATASET, task_preset_key
    from tests._data_files import image_folder

    first = own_seeded_workspace["dataset_id"]
    folder = image_folder(tmp_path / "clinic", {"NORMAL": 3, "CNV": 3}, split="train")
    at = _page()
    at.text_input(key="train_add_folder").input(str(folder)).run()
    at.button(key="train_add_folder_button").click().run()
    second = at.selectbox(key="train_dataset").value
    assert second != first
    at.selectbox(key="train_dataset").set_value(first).run()
    preset = at.selectbox(key=task_preset_key(first))
    other = next(o for o in preset.options if o != FROM_DATASET)
    preset.set_value(other).run()
    at.selectbox(key="train_dataset").set_value(second).run()
    assert not at.exception
    assert at.selectbox(key=task_preset_key(second)).value == FROM_DATASET


def test_a_logistic_head_shows_no_epochs_learning_rate_or_smoothing(own_seeded_workspace):
    # It showed a greyed "Epochs 30", "Learning rate 1e-03", "Best epoch 1 of 1" and a smoothing slider.
    import pandas as pd

    from dashboard.training_ui import LOGISTIC_NOTE, run_table

    ws = Workspace.open(own_seeded_workspace["root"])
    seeded = ws.get_run(own_seeded_workspace["run_id"])
    config = {**seeded["config"], "head_fit": "logistic", "epochs": 30, "lr": 0.001}
    run_id = ws.create_run(config=config, name="logistic head run")
    run = ws.get_run(run_id)
    Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
    (Path(run["run_dir"]) / "events.jsonl").write_text(json.dumps(
        {"type": "summary", "best_epoch": 1, "epochs_run": 1, "metric": "auroc", "val": {"n": 4}}) + "\n")
    ws.update_run(run_id, status="succeeded")
    at = _page(select_run=run_id)
    assert at.selectbox(key="train_head_fit").value == "logistic"
    assert not [n for n in at.number_input if n.key in ("train_epochs_features", "train_lr_features")]
    captions = [c.value for c in at.caption]
    assert LOGISTIC_NOTE in captions and not any(c.startswith("Best epoch") for c in captions)
    assert "train_smoothing" not in [s.key for s in at.slider]
    row = run_table(ws.list_runs()).set_index("id").loc[run_id]
    assert pd.isna(row["epochs"]) and pd.isna(row["lr"])


def test_imported_scores_are_kept_out_of_the_run_list(own_seeded_workspace):
    """Scores imported from a file (mode "imported": no model, no training curves) were listed among the runs: they
    are kept apart, still renamed, archived or deleted from this page."""
    from core.data.tasks import get_task
    from core.infer.imported import import_predictions, plan_import
    from core.infer.predictions import probability_columns, read_predictions
    from core.infer.score_table import read_score_file

    ids = own_seeded_workspace
    ws = Workspace.open(ids["root"])
    table, _ = read_predictions(ws.find_predictions(ids["run_id"], ids["test_set_id"])["path"])
    columns = ["image_id", *probability_columns(get_task("oct-kermany"))]
    scores = read_score_file(table[columns].to_csv(index=False).encode(), "vendor.csv")
    imported = import_predictions(ws, plan_import(ws, scores, ids["test_set_id"]), name="Vendor scores").run_id
    at = _page()
    assert imported not in set(at.dataframe[0].value["id"]) and ids["run_id"] in set(at.dataframe[0].value["id"])
    assert not any(o.startswith("Vendor scores") for o in at.selectbox(key="train_selected_run").options)
    assert at.selectbox(key="train_imported").value == imported and len(at.selectbox(key="train_imported").options) == 1
