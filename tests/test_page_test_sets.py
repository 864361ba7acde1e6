"""Test sets page (AppTest on the seeded workspace): preview, uploads (good, hostile), background inference."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.store import Workspace
from tests.apptest import signed_in_app
from tests._data_files import image_folder


def _page() -> AppTest:
    at = signed_in_app(timeout=120).run()
    at.switch_page("../pages/test_sets.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _upload(at: AppTest, name: str, data: bytes, task: str = "auto") -> AppTest:
    at.selectbox(key="testsets_add_task").set_value(task)
    at.file_uploader(key="testsets_add_file").set_value((name, data, "application/zip")).run()
    at.button(key="testsets_add_upload_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_demo_test_set_preview_and_cached_predictions(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    demo = ws.get_dataset(own_seeded_workspace["test_set_id"])
    at = _page()
    # The seeded workspace is shared with other tests that add test sets and runs: pick the demo explicitly.
    at.selectbox(key="testsets_preview").set_value(demo["id"]).run()
    at.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"]).run()
    listed = at.dataframe[0].value
    assert demo["id"] in set(listed["id"]) and bool(listed.set_index("id").loc[demo["id"], "synthetic"])
    assert {m.label: m.value for m in at.metric}["Images"] == str(demo["n_images"])
    counts = at.dataframe[1].value
    assert int(counts["total"].sum()) == demo["n_images"] and list(counts.columns[:4]) == ["CNV", "DME", "DRUSEN",
                                                                                         "NORMAL"]
    per_class_lines = [t.value for t in at.text if t.value.split(":")[0] in ("CNV", "DME", "DRUSEN", "NORMAL")]
    assert len(per_class_lines) == 4
    assert len(at.get("image")) == 4 * min(4, demo["n_images"] // 4)  # default 4 thumbnails per class
    at.slider(key="testsets_per_class").set_value(1).run()
    assert len(at.get("image")) == 4
    assert any("synthetic" in i.value.lower() for i in at.info)
    # The seeded model's predictions on it exist: shown as already computed, nothing re-run.
    assert any("Already computed" in s.value for s in at.success)
    assert "testsets_run_inference" not in [b.key for b in at.button]


def test_upload_registers_a_test_set_and_runs_inference_in_the_background(own_seeded_workspace, tmp_path):
    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "upload", {"CNV": 2, "DME": 1, "DRUSEN": 1, "NORMAL": 2}, size=(40, 32))
    before = {d["id"] for d in ws.list_datasets(role="test_set")}
    at = _upload(_page(), "clinic test (June).zip", _zip_of(folder), task="oct-kermany")
    assert not at.error, [c.value for c in at.code]
    (added,) = [d for d in ws.list_datasets(role="test_set") if d["id"] not in before]
    assert added["n_images"] == 6 and added["task"] == "oct-kermany"
    assert Path(added["source"]).resolve().is_relative_to(ws.uploads_dir.resolve())
    assert at.selectbox(key="testsets_preview").value == added["id"]
    assert any("added" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["Images"] == "6"

    # Inference runs in a background thread, polled by a fragment; the result is then cached.
    assert ws.find_predictions(own_seeded_workspace["run_id"], added["id"]) is None
    at.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"]).run()
    at.button(key="testsets_run_inference").click().run()
    deadline = time.time() + 60
    while ws.find_predictions(own_seeded_workspace["run_id"], added["id"]) is None and time.time() < deadline:
        time.sleep(0.5)
    record = ws.find_predictions(own_seeded_workspace["run_id"], added["id"])
    assert record is not None and record["n_rows"] == 6
    for _ in range(20):  # the thread records "done" right after predict() returns
        at.run()
        if any("Predictions computed" in s.value for s in at.success):
            break
        time.sleep(0.25)
    assert any("Predictions computed" in s.value for s in at.success), [s.value for s in at.success]
    # A reload is a new session: the page finds the job again on the process's board by run and test set, so it
    # still reports this run's fresh result rather than "Already computed".
    reloaded = signed_in_app(timeout=120, testsets_preview=added["id"]).run()
    reloaded.switch_page("../pages/test_sets.py").run()
    reloaded.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"]).run()
    assert any("Predictions computed" in s.value for s in reloaded.success), [s.value for s in reloaded.success]


def test_hostile_and_broken_zips_show_an_error_and_register_nothing(own_seeded_workspace, tmp_path):
    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "evil", {"A": 2, "B": 2})
    datasets_before = ws.list_datasets()
    uploads_before = sorted(p.name for p in ws.uploads_dir.iterdir())
    at = _page()
    for name, data, reason in (("evil.zip", _zip_of(folder, {"../../escaped.txt": b"owned"}), "outside"),
                               ("broken.zip", b"PK\x03\x04 not a zip at all", "not a readable zip")):
        _upload(at, name, data)
        assert any("Nothing was added" in e.value for e in at.error)
        assert any(reason in c.value for c in at.code), [c.value for c in at.code]
        assert ws.list_datasets() == datasets_before
        assert sorted(p.name for p in ws.uploads_dir.iterdir()) == uploads_before
    assert not list(ws.root.parent.rglob("escaped.txt"))


def test_csv_alone_is_explained(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    datasets_before = ws.list_datasets()
    at = _page()
    at.file_uploader(key="testsets_add_file").set_value(
        ("labels.csv", b"path,label\nimg1.png,CNV\nimg2.png,NORMAL\n", "text/csv")).run()
    at.button(key="testsets_add_upload_button").click().run()
    assert any("upload a zip" in c.value for c in at.code)
    assert ws.list_datasets() == datasets_before


def test_register_a_server_folder(own_seeded_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path))  # server folders only under a data root
    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "server", {"NORMAL": 2, "DRUSEN": 2}, size=(36, 30))
    at = _page()
    at.text_input(key="testsets_add_folder").input(str(tmp_path / "missing")).run()
    at.button(key="testsets_add_folder_button").click().run()
    assert any("no such folder" in c.value for c in at.code)
    at.text_input(key="testsets_add_folder").input(str(folder)).run()
    at.button(key="testsets_add_folder_button").click().run()
    assert not at.error
    added = ws.get_dataset(at.selectbox(key="testsets_preview").value)
    assert Path(added["source"]) == folder.resolve() and added["n_images"] == 4


def test_open_in_performance_carries_the_selection(own_seeded_workspace):
    at = _page()
    at.selectbox(key="testsets_preview").set_value(own_seeded_workspace["test_set_id"]).run()
    at.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"]).run()
    assert "testsets_open_perf" in [b.key for b in at.button]  # offered once the run has predictions here
    at.button(key="testsets_open_perf").click().run()
    assert at.session_state["run_id"] == own_seeded_workspace["run_id"]
    assert at.session_state["test_set_id"] == own_seeded_workspace["test_set_id"]
    assert "Test sets" not in [t.value for t in at.title]  # we left the page


def test_delete_an_uploaded_test_set_and_archive_a_used_one(own_seeded_workspace, tmp_path):
    ws = Workspace.open(own_seeded_workspace["root"])
    used = own_seeded_workspace["test_set_id"]  # the seeded run has predictions on it
    at = _upload(_page(), "clinic.zip", _zip_of(image_folder(tmp_path / "clinic", {"NORMAL": 2, "CNV": 2})))
    (uploaded,) = [t["id"] for t in ws.list_datasets(role="test_set") if t["id"] != used]
    upload_folder = Path(ws.get_dataset(uploaded)["source"])
    assert upload_folder.exists() and upload_folder.resolve().is_relative_to(ws.uploads_dir.resolve())
    at.selectbox(key="testsets_preview").set_value(uploaded).run()
    assert at.button(key=f"testsets_manage_delete_{uploaded}").disabled
    at.checkbox(key=f"testsets_manage_confirm_{uploaded}").check().run()
    at.button(key=f"testsets_manage_delete_{uploaded}").click().run()
    assert not at.exception and ws.get_dataset(uploaded) is None and not upload_folder.exists()
    assert any("Deleted the test set" in s.value for s in at.success)
    assert uploaded not in at.selectbox(key="testsets_preview").options

    at.selectbox(key="testsets_preview").set_value(used).run()
    at.checkbox(key=f"testsets_manage_confirm_{used}").check().run()
    at.button(key=f"testsets_manage_delete_{used}").click().run()
    assert any("Archived the test set instead" in s.value for s in at.success)
    assert ws.get_dataset(used)["archived"] and any("No test set to show" in i.value for i in at.info)
    assert at.selectbox(key="testsets_restore_archived").value == used  # and back with one click
    at.button(key="testsets_restore_restore").click().run()
    assert not at.exception and not ws.get_dataset(used)["archived"]
    assert at.selectbox(key="testsets_preview").value == used


def test_runs_with_the_same_name_are_told_apart(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    seeded = ws.get_run(own_seeded_workspace["run_id"])
    twin = ws.create_run(config={**seeded["config"], "task": seeded["task"]}, name=seeded["name"])
    ws.update_run(twin, status="succeeded")
    at = _page()
    labels = at.selectbox(key="testsets_run").options  # AppTest holds the labels the user reads
    assert len(labels) == 2 and len(set(labels)) == 2, labels
    assert any(seeded["id"][-4:] in label for label in labels) and any(twin[-4:] in label for label in labels)


def _site_page(ws, test_set_id: str, run_id: str) -> AppTest:
    at = _page()
    at.selectbox(key="testsets_preview").set_value(test_set_id).run()
    at.selectbox(key="testsets_run").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _site_warning(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "looks different from the training images" in w.value]


def test_a_shifted_test_set_offers_both_remedies_and_an_adapted_runs_calls_say_so(own_seeded_workspace, tmp_path):
    from core.infer.site_check import adaptation_text, read_card
    from dashboard.widgets import plain
    from tests._site_data import adapted_run, audit_against_training, shifted_test_set

    seeded = own_seeded_workspace
    ws = Workspace.open(seeded["root"])
    site = shifted_test_set(seeded, tmp_path / "site")
    at = _site_page(ws, site, seeded["run_id"])
    warning = _site_warning(at)
    assert warning and "The model's calls may not hold here" in warning[0]
    keys = [b.key for b in at.button]
    assert "testsets_site_adapt" in keys and "testsets_recal_go" in keys  # both remedies
    assert any("labelled images" in d.value.columns for d in at.dataframe)
    assert not any("adapted without labels" in i.value for i in at.info)  # the source run's calls are its own

    # The demo test set, audited against the training data and not shifted: no warning, no remedies.
    assert not audit_against_training(ws, seeded["test_set_id"], seeded["dataset_id"])["shift"]["flagged"]
    plain_at = _site_page(ws, seeded["test_set_id"], seeded["run_id"])
    assert not _site_warning(plain_at) and "testsets_site_adapt" not in [b.key for b in plain_at.button]

    # An adapted run (the real adapt_unlabelled): its calls on this page name the adaptation.
    new_id = adapted_run(seeded, site)
    run = ws.get_run(new_id)
    sentence = adaptation_text(read_card(ws, new_id), run["name"])
    adapted_at = _site_page(ws, site, new_id)
    assert any(i.value == plain(sentence) for i in adapted_at.info)
    assert "estimated prevalence CNV" in sentence and "threshold" in sentence


def test_inference_is_refused_beforehand_when_the_labels_do_not_match(own_seeded_workspace, tmp_path):
    # "Run inference" stayed enabled, then failed with the upload's server path in the message.
    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "other", {"CNV": 2, "ELSEWHERE": 2}, size=(40, 32))
    at = _upload(_page(), "other labels.zip", _zip_of(folder))
    added = ws.get_dataset(at.selectbox(key="testsets_preview").value)
    at.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"]).run()
    assert not at.exception
    assert at.button(key="testsets_run_inference").disabled
    (warning,) = [w.value for w in at.warning if "cannot run on this test set" in w.value]
    assert "ELSEWHERE" in warning and "other labels" in warning and "are not classes of the model" in warning
    assert str(Path(added["source"]).parent) not in warning and str(ws.root) not in warning
    # A test set whose labels are the model's classes keeps the button.
    at.selectbox(key="testsets_preview").set_value(own_seeded_workspace["test_set_id"]).run()
    assert not any("cannot run on this test set" in w.value for w in at.warning)


def _open_tab(at: AppTest) -> int:
    """The index of the tab the page opens on (its tab container's default)."""
    nodes = list(at.main.children.values())
    while nodes:
        node = nodes.pop()
        proto = getattr(node, "proto", None)
        if (proto is not None and "type" in getattr(getattr(proto, "DESCRIPTOR", None), "oneofs_by_name", {})
                and proto.WhichOneof("type") == "tab_container"):  # a widget's own proto has no "type"
            return proto.tab_container.default_tab_index
        nodes.extend(getattr(node, "children", {}).values())
    raise AssertionError("no tabs on the page")


def test_run_inference_keeps_its_tab_open(own_seeded_workspace, tmp_path):
    # Each rerun (the click, the end of the job) reopened the Preview tab and hid the progress bar.
    ws = Workspace.open(own_seeded_workspace["root"])
    folder = image_folder(tmp_path / "upload", {"CNV": 1, "NORMAL": 1}, size=(40, 32))
    at = _upload(_page(), "tab test.zip", _zip_of(folder), task="oct-kermany")
    added = at.selectbox(key="testsets_preview").value
    at.selectbox(key="testsets_run").set_value(own_seeded_workspace["run_id"])
    at.session_state["testsets_tab"] = "Run a model on it"  # the user opens the tab
    at.run()
    assert _open_tab(at) == 1
    at.button(key="testsets_run_inference").click().run()
    assert not at.exception and _open_tab(at) == 1
    deadline = time.time() + 60
    while ws.find_predictions(own_seeded_workspace["run_id"], added) is None and time.time() < deadline:
        time.sleep(0.5)
    for _ in range(20):
        at.run()
        if any("Predictions computed" in s.value for s in at.success):
            break
        time.sleep(0.25)
    assert any("Predictions computed" in s.value for s in at.success) and _open_tab(at) == 1


def test_the_source_column_shows_folder_names_to_a_researcher(own_seeded_workspace):
    from core.store.access import RESEARCHER

    ws = Workspace.open(own_seeded_workspace["root"])
    at = signed_in_app(RESEARCHER, timeout=120).run()
    at.switch_page("../pages/test_sets.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(f.value for f in at.dataframe if "source" in f.value)
    sources = {t["id"]: Path(t["source"]).name for t in ws.list_datasets(role="test_set")}
    assert dict(zip(table["id"], table["source"])) == sources
    assert not any(str(ws.root) in v for v in table["source"])
