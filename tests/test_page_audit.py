"""AppTest of the audit in the dashboard: the Test sets page's Audit section (started automatically, then shown)
and the Performance page's shift banner, duplicate count and duplicates-removed numbers, each on its own workspace."""

from __future__ import annotations

import json
import time

import numpy as np
from PIL import Image

from core.audit import cached_audit
from core.audit.jobs import PIXELS_ONLY, audit_state
from core.data.ingest import load_registered, register_folder
from core.store import Workspace
from core.train.config import RunConfig
from core.infer.predictions import write_predictions
from tests._evaluation_data import predictions_table, synthetic_probabilities
from tests.apptest import open_page


def _film(seed: int, size) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(np.uint8(rng.random((6, 8)) * 200 + 30)).resize(size, Image.BICUBIC)


def _workspace(tmp_path, monkeypatch) -> tuple[Workspace, str, str]:
    """A training folder of 64 x 40 films and a test folder of 32 x 32 squares holding one exact duplicate."""
    from core.data.demo import ensure_demo

    ws = Workspace.open(tmp_path / "workspace")
    monkeypatch.setenv("CORE_WORKSPACE", str(ws.root))
    ensure_demo(ws, per_class=2, test_per_class=1, size=32)  # a tiny demo, so the pages do not generate theirs
    for i in range(12):
        cls = "A" if i % 2 else "B"
        for folder, seed, size in (("train_data", 100 + i, (64, 40)), ("test_data", 200 + i, (32, 32))):
            path = tmp_path / folder / cls / f"{cls}-P{seed}-1.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            _film(seed, size).save(path)
    _film(200, (32, 32)).save(tmp_path / "test_data" / "B" / "B-P900-1.png")  # same pixels as B-P200-1.png
    train = register_folder(ws, tmp_path / "train_data", role="dataset", name="training films").dataset_id
    test = register_folder(ws, tmp_path / "test_data", role="test_set", name="square copies").dataset_id
    return ws, train, test


def test_test_sets_audit_section_starts_by_itself_and_shows_the_shift(tmp_path, monkeypatch):
    ws, train, test = _workspace(tmp_path, monkeypatch)
    at = open_page("../pages/test_sets.py", testsets_preview=test)
    deadline = time.monotonic() + 60
    while audit_state(ws, test, train)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert audit_state(ws, test, train)["status"] == "done"
    at.run()
    assert not at.exception
    assert at.selectbox(key="testsets_audit_against").value == train
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Exact duplicate groups"] == "1" and metrics["Shift from training"] == "flagged"
    assert any("differs from the training data" in w.value for w in at.warning)
    assert any("test images are all 32 x 32 squares; training images are all 64 x 40 landscape" in t.value
               for t in at.text)
    assert at.button(key="testsets_audit_full").label.startswith("Run the full audit")
    # comparing with nothing: the test set alone, audited too, and no shift part
    at.selectbox(key="testsets_audit_against").set_value("__none__").run()
    deadline = time.monotonic() + 60
    while audit_state(ws, test)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Exact duplicate groups"] == "1" and "Shift from training" not in metrics


def _predictions(ws: Workspace, train: str, test: str) -> str:
    record = ws.get_dataset(test)
    ds = load_registered(ws, test)
    task = ds.task
    cfg = RunConfig(data="", task=task.to_dict(), name="square model", backbone="synthetic-predictions",
                    pretrained=False)
    run_id = ws.create_run(config={**cfg.to_dict(), "dataset_id": train}, name="square model")
    cfg.save(ws.runs_dir / run_id / "config.json")
    (ws.runs_dir / run_id / "summary.json").write_text(json.dumps({"images": {"train": 12}, "synthetic": True}))
    ws.update_run(run_id, status="succeeded")
    truth = ds.label_indices()
    frame = predictions_table(task, truth, synthetic_probabilities(task, truth, 2.0))
    frame["image_id"], frame["patient_id"] = ds.table["image_id"].to_numpy(), ds.table["patient_id"].to_numpy()
    path = ws.predictions_path(run_id, record["id"])
    write_predictions(frame, path, {"task": task.to_dict(), "run_id": run_id, "dataset_id": test, "classes": list(task.classes),
                         "synthetic": True})
    ws.record_predictions(run_id, test, path, len(frame))
    return run_id


def test_performance_banner_duplicate_count_and_numbers_without_duplicates(tmp_path, monkeypatch):
    ws, train, test = _workspace(tmp_path, monkeypatch)
    run_id = _predictions(ws, train, test)
    cached_audit(ws, load_registered(ws, test), load_registered(ws, train), options=PIXELS_ONLY)
    at = open_page("../pages/performance.py", run_id=run_id, test_set_id=test)
    warnings = [w.value for w in at.warning]
    assert any("looks different from the run's training data" in w for w in warnings)
    assert any("test images are all 32 x 32 squares" in t.value for t in at.text)
    assert any(w.startswith("1 test images are exact copies of another test image (1 groups)") for w in warnings)
    table = next(f.value for f in at.dataframe if "duplicates removed" in f.value.columns)
    images = table.set_index("measure").loc["Images"]
    assert images["all images"] == "13" and images["duplicates removed"] == "12"
    assert table.set_index("measure").loc["Accuracy", "duplicates removed"].endswith(")")  # a value with its CI


def test_performance_page_without_a_registered_training_set_says_so(tmp_path, monkeypatch):
    ws, train, test = _workspace(tmp_path, monkeypatch)
    run_id = _predictions(ws, train, test)
    ws.remove_dataset(train)
    cached_audit(ws, load_registered(ws, test), options=PIXELS_ONLY)
    at = open_page("../pages/performance.py", run_id=run_id, test_set_id=test)
    assert any("training data is not registered" in c.value for c in at.caption)
    assert not any("looks different" in w.value for w in at.warning)


def test_a_dicom_folder_registered_with_a_chosen_window_is_audited(tmp_path, monkeypatch):
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path))  # server folders only under a data root
    from tests._dicom_files import PATIENT_NAME, write_dicom

    ws, _, _ = _workspace(tmp_path, monkeypatch)
    for i in range(4):
        cls = "NORMAL" if i % 2 else "PNEUMONIA"
        ramp = (np.arange(256).reshape(16, 16) * (i + 1)).astype(np.uint16)
        write_dicom(tmp_path / "dicom" / cls / f"im{i}.dcm", ramp, bits_stored=12, window=(0, 1))
    at = open_page("../pages/test_sets.py")
    at.selectbox(key="testsets_add_dicom_window").set_value("full").run()
    at.text_input(key="testsets_add_folder").input(str(tmp_path / "dicom")).run()
    at.button(key="testsets_add_folder_button").click().run()
    assert not at.error
    added = ws.get_dataset(at.selectbox(key="testsets_preview").value)
    assert added["meta"]["dicom"] == {"window": "full", "frames": "refuse", "burned_in": "refuse"}
    ds = load_registered(ws, added["id"])
    # full range: the ramp's middle value 128 of 255 stays 128 (the file's window (0, 1) would make it white)
    assert [int(np.asarray(ds.load_image(i))[8, 0]) for i in range(4)] == [128] * 4
    deadline = time.monotonic() + 60
    while audit_state(ws, added["id"])["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)  # started when the folder was added
    report = audit_state(ws, added["id"])["report"]
    assert report["properties"]["data"]["all"]["file_format"] == {"DICOM": 4}
    assert report["properties"]["data"]["all"]["bit_depth"] == {"12": 4}
    assert PATIENT_NAME not in json.dumps(report)


def test_label_issues_panel_runs_on_request(tmp_path, monkeypatch):
    ws, train, test = _workspace(tmp_path, monkeypatch)
    run_id = ws.create_run(config={"backbone": "test_efficientnet", "pretrained": False, "mode": "features",
                                   "image_size": 32, "dataset_id": train}, name="tiny run")
    ws.update_run(run_id, status="succeeded")
    at = open_page("../pages/test_sets.py", testsets_preview=test)
    at.selectbox(key="testsets_audit_issues_run").set_value(run_id).run()
    at.button(key="testsets_audit_issues_button").click().run()
    deadline = time.monotonic() + 300  # a busy 2-core CI machine
    while audit_state(ws, test, train, run_id)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    state = audit_state(ws, test, train, run_id)
    assert state["status"] == "done", state
    at.run()
    assert not at.exception
    assert any(t.value.startswith(f"Likely label errors to review (run {run_id}):") and "no label is changed" in t.value
               for t in at.text), [t.value for t in at.text]


def test_full_audit_shows_its_progress_from_the_first_click(tmp_path, monkeypatch):
    """Issue 22 item 6: the full audit's first click used to show the cached pixel checks and the same button again,
    nothing about the running job, for minutes; now its progress shows at once, and the page follows it to the end."""
    from core.audit.jobs import FULL, KIND, registered_key
    from core.jobs import find_job

    ws, train, test = _workspace(tmp_path, monkeypatch)
    at = open_page("../pages/test_sets.py", testsets_preview=test)
    deadline = time.monotonic() + 60
    while audit_state(ws, test, train)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.get("progress")
    at.button(key="testsets_audit_full").click().run()
    job = find_job(ws, KIND, registered_key(ws, test, train, None, FULL))
    try:
        assert job.active  # a backbone to load and run: not done within one page run
        assert [p for p in at.get("progress") if "Auditing" in p.proto.text], "no progress after the first click"
        assert any("The full audit" in i.value and "is running" in i.value for i in at.info)
        assert not any(b.key == "testsets_audit_full" for b in at.button)  # not offered twice
    finally:
        deadline = time.monotonic() + 300
        while job.active and time.monotonic() < deadline:
            time.sleep(0.1)
    at.run()
    assert job.state == "done", job.error
    # the result is shown without a second click: no progress, no button, no "running" note
    assert not at.exception and not at.get("progress")
    assert audit_state(ws, test, train)["report"]["options"]["features"] is True
    assert not any(b.key == "testsets_audit_full" for b in at.button)
    assert not any("is running" in i.value for i in at.info)
