"""Reader study page: grade, reload and resume at the same image, finish and see results; blinded until then."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

PAGE = "../pages/reader_study.py"


def _open() -> AppTest:
    return open_page(PAGE, timeout=120)

def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def ws(own_seeded_workspace):
    from core.store import Workspace

    return Workspace.open(own_seeded_workspace["root"])


@pytest.fixture
def study(ws, own_seeded_workspace) -> str:
    """A fresh 6-image study on the demo test set, in this test's own copy of the seeded workspace."""
    from core.data import load_dataset
    from core.readers import create_study

    row = ws.get_dataset(own_seeded_workspace["test_set_id"])
    dataset = load_dataset(row["source"], "oct-kermany")
    return create_study(ws, row["id"], dataset, "oct-kermany", subset_size=6, seed=7,
                        name=f"test study {uuid.uuid4().hex[:6]}")


def _join(study_id: str, reader: str, **session_state) -> AppTest:
    """Reader `reader`, signed in as themself, opens the page and starts (or, landing in it, resumes) the study."""
    at = open_page(PAGE, timeout=120, role="reader", user=reader, **session_state)
    if [b for b in at.button if b.key == "rs_join"]:  # not reading yet (a signed-in reader resumes by themself)
        at.selectbox(key="rs_study").set_value(study_id).run()
        at.button(key="rs_join").click().run()
    return _ok(at)


def _caption(at: AppTest) -> str:
    (image,) = at.get("image")
    return image.captions[0]


def _grade(at: AppTest, class_index: int = 0) -> AppTest:
    return _ok(at.button(key=f"rs_class_{class_index}").click().run())


def _rendered_text(at: AppTest) -> list[str]:
    """Everything a reader can read on the page, except the class buttons (which list every class)."""
    texts = [e.value for kind in ("markdown", "caption", "text", "code", "info", "success", "warning", "error",
                                  "title", "header", "subheader", "json") for e in at.get(kind)]
    texts += [c for image in at.get("image") for c in image.captions]
    texts += [b.label for b in at.button if not (b.key or "").startswith("rs_class_")]
    texts += [str(o) for r in at.radio for o in r.options] + [w.label for w in at.radio]
    texts += [str(o) for s in at.selectbox for o in s.options]
    texts += [f"{m.label} {m.value}" for m in at.metric]
    return texts


def test_grade_reload_resume_finish_and_see_results(ws, study, own_seeded_workspace):
    from core.readers import list_readings, progress

    reader = f"dr-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader)
    assert _caption(at) == "Image 1 of 6"
    _grade(at, 0)
    _grade(at, 3)
    assert _caption(at) == "Image 3 of 6"
    assert progress(ws, study, reader).answered == 2  # committed at once, not at the end

    # A reload is a new browser session: the signed-in reader continues at the same image.
    at = _join(study, reader)
    assert _caption(at) == "Image 3 of 6"
    at.button(key="rs_previous").click().run()
    assert _caption(at) == "Image 2 of 6"
    assert any("Answered already" in c.value for c in at.caption)
    _grade(at, 1)  # changing an earlier answer goes back to the first image without one
    assert _caption(at) == "Image 3 of 6"
    for _ in range(4):
        _grade(at, 1)
    assert not at.get("image")
    at.button(key="rs_finish").click().run()
    _ok(at)
    assert any("You finished: 6 of 6" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert {"Your sensitivity", "Your specificity", "Your weighted error"} <= set(metrics)
    assert "(" in metrics["Your sensitivity"] and " to " in metrics["Your sensitivity"]
    assert "Agreement with the model (kappa)" in metrics
    confusion = next(d.value for d in at.dataframe if "called CNV" in d.value.columns)
    assert int(confusion.to_numpy().sum()) == 6
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(trace.get("name") == reader for trace in spec["data"])
    # The finished reader's answers are readings of the test set now, ready for the experts page.
    readings = list_readings(ws, own_seeded_workspace["test_set_id"])
    assert (readings["reader_id"] == reader).sum() == 6


def test_reentering_a_code_resumes_its_study_whichever_is_selected(ws, study, own_seeded_workspace):
    from core.data import load_dataset
    from core.readers import create_study

    reader = f"back-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader)
    _grade(at, 0)
    row = ws.get_dataset(own_seeded_workspace["test_set_id"])
    other = create_study(ws, row["id"], load_dataset(row["source"], "oct-kermany"), "oct-kermany", subset_size=4)
    at = _join(other, reader)  # the newer study is selected; the reader's own study is resumed
    assert _caption(at) == "Image 2 of 6"
    assert at.session_state["reader_session"]["study_id"] == study


def test_nothing_reveals_truth_or_model_before_finishing(ws, study, own_seeded_workspace):
    from core.infer import read_predictions
    from core.readers import next_item, reader_results
    from core.readers.study import BlindingError

    reader = f"blind-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader)
    _grade(at, 2)
    item = next_item(ws, study, reader)
    assert _caption(at) == item.caption
    frame, _ = read_predictions(own_seeded_workspace["predictions_path"])
    row = frame.set_index("image_id").loc[item.image_id]
    truth = row["label"]
    probabilities = [row[f"prob_{c}"] for c in ("CNV", "DME", "DRUSEN", "NORMAL")]
    # The reader's own last call is echoed back ("Last answer saved: DRUSEN"); it is theirs, not the next truth.
    texts = [t for t in _rendered_text(at) if t != "Last answer saved: DRUSEN"]
    assert texts, "the page rendered nothing to check"
    for text in texts:
        assert truth not in text, text
        assert item.image_id not in text and item.image_id.split("/")[-1] not in text
        for p in probabilities:
            assert f"{p:.2f}" not in text and f"{p:.3f}" not in text, text
    assert not at.dataframe and not at.metric and not at.get("plotly_chart")
    with pytest.raises(BlindingError):
        reader_results(ws, study, reader, predictions=frame)


def test_end_early_shows_results_on_the_graded_images(study):
    reader = f"early-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader)
    _grade(at, 0)
    _grade(at, 3)
    at.button(key="rs_end_early").click().run()
    assert any("End now?" in w.value for w in at.warning)
    at.button(key="rs_end_confirm").click().run()
    _ok(at)
    assert any("You ended early: 2 of 6" in s.value for s in at.success)
    confusion = next(d.value for d in at.dataframe if "called CNV" in d.value.columns)
    assert int(confusion.to_numpy().sum()) == 2  # analysed on the two graded images only


def test_two_readers_do_not_see_each_others_work(ws, study):
    from core.readers import progress

    first, second = (f"pair-{uuid.uuid4().hex[:6]}" for _ in range(2))
    at_first = _join(study, first)
    at_second = _join(study, second)
    for _ in range(3):
        _grade(at_first, 0)
    _grade(at_second, 1)
    assert _caption(at_first) == "Image 4 of 6" and _caption(at_second) == "Image 2 of 6"
    assert progress(ws, study, first).answered == 3 and progress(ws, study, second).answered == 1


def test_new_study_from_the_page(ws, own_seeded_workspace):
    from core.readers import list_studies

    name = f"page study {uuid.uuid4().hex[:6]}"
    at = _open()
    at.selectbox(key="rs_study").set_value("__new__").run()
    at.text_input(key="rs_new_name").input(name)
    at.number_input(key="rs_new_size").set_value(4)
    at.button(key="FormSubmitter:rs_new_study-Create study").click().run()
    _ok(at)
    created = next(s for s in list_studies(ws, own_seeded_workspace["test_set_id"]) if s["name"] == name)
    assert created["subset_size"] == 4
    assert at.selectbox(key="rs_study").value == created["id"]


def test_password_is_checked_when_the_workspace_has_them(workspace, monkeypatch):
    from core.data import load_dataset
    from core.data.demo import ensure_demo
    from core.readers import create_study, set_reader_password

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    demo = ensure_demo(workspace)
    test_set = load_dataset(workspace.get_dataset(demo["test_set_id"])["source"], "oct-kermany")
    study_id = create_study(workspace, demo["test_set_id"], test_set, "oct-kermany", subset_size=4)
    set_reader_password(workspace, "dr-pw", "correct horse")
    at = open_page(PAGE, timeout=120, role="reader", user="dr-pw")
    at.selectbox(key="rs_study").set_value(study_id)
    at.text_input(key="rs_password").input("wrong one")
    at.button(key="rs_join").click().run()
    assert any("wrong password" in e.value for e in at.error)
    assert not at.get("image")
    at.text_input(key="rs_password").input("correct horse")
    at.button(key="rs_join").click().run()
    _ok(at)
    assert any("Reader:" in m.value for m in at.markdown) and _caption(at) == "Image 1 of 4"


def test_zoom_enlarges_the_region_around_the_chosen_centre():
    from PIL import Image

    from dashboard.reader_ui import zoom_image

    image = Image.new("L", (64, 32))
    image.putdata([x * 4 for _y in range(32) for x in range(64)])  # brightness grows left to right
    whole = zoom_image(image, 1.0, 0.5, 0.5, display=640)
    assert whole.size == (640, 320)
    left = zoom_image(image, 2.0, 0.0, 0.5, display=640)  # the left half, enlarged
    right = zoom_image(image, 2.0, 1.0, 0.5, display=640)
    assert left.size == right.size == (640, 320)
    left_px, right_px = np.asarray(left, float), np.asarray(right, float)
    assert left_px.mean() == pytest.approx(62, abs=3) and right_px.mean() == pytest.approx(190, abs=3)
    assert left_px[:, 20:-20].max() < 128 <= right_px[:, 20:-20].min()  # away from resampling ringing at edges
    beyond = zoom_image(image, 4.0, 5.0, -3.0, display=640)  # a centre outside the image stays inside it
    assert beyond.size == (640, 320) and np.asarray(beyond, float).mean() == pytest.approx(222, abs=3)


def test_demo_test_set_gets_simulated_readers_on_first_visit(workspace, monkeypatch):
    from core.data.demo import ensure_demo
    from core.readers import list_readings

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    demo = ensure_demo(workspace)
    assert list_readings(workspace, demo["test_set_id"]).empty
    _open()
    readers = set(list_readings(workspace, demo["test_set_id"])["reader_id"])
    assert readers and all(r.startswith("SIMULATED-") for r in readers)


def test_test_set_picker_defaults_to_one_a_model_has_seen(ws, own_seeded_workspace):
    """A fresh upload no model has run on is the newest test set; the picker still starts on the seeded one."""
    row = ws.get_dataset(own_seeded_workspace["test_set_id"])
    time.sleep(0.01)
    ws.register_dataset(name="fresh upload", source=row["source"], task="oct-kermany", fingerprint="fresh-upload",
                        n_images=row["n_images"], role="test_set")
    assert ws.list_datasets(role="test_set")[0]["name"] == "fresh upload"
    at = _ok(_open())
    assert at.selectbox(key="rs_test_set").value == own_seeded_workspace["test_set_id"]


def test_answer_controls_keep_the_keys_working_and_acknowledge_each_answer(ws, study):
    """Confidence is a row of buttons, not radio inputs (Streamlit ignores shortcut keys while an <input> has
    focus), every class button carries its key, and each stored answer is acknowledged on the page."""
    from core.readers import get_study, item_at, own_answer

    reader = f"dr-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader)
    assert not [r for r in at.radio if str(r.key).startswith("rs_confidence")]
    (confidence,) = [w for w in at.get("button_group") if str(w.proto.id).find("rs_confidence") >= 0]
    classes = get_study(ws, study).task.classes
    assert [at.button(key=f"rs_class_{i}").proto.shortcut for i in range(len(classes))] == \
        [str(i + 1) for i in range(len(classes))]
    at.session_state[f"rs_confidence_{study}_1"] = 4  # what a click on "4" in the button row sets
    _grade(at, 2)
    assert f"Last answer saved: {classes[2]}" in [c.value for c in at.caption]
    assert [t.value for t in at.toast] == [f"Saved: {classes[2]}"]
    assert _caption(at) == "Image 2 of 6"
    first = item_at(ws, study, reader, 1).image_id
    assert own_answer(ws, study, reader, first)["label"] == classes[2]
    assert int(own_answer(ws, study, reader, first)["confidence"]) == 4


def test_compare_with_model_starts_on_the_run_selected_elsewhere(ws, study, own_seeded_workspace):
    """A newer model's predictions on the same test set head the list; the selected run is still the default."""
    import shutil

    seeded = own_seeded_workspace
    newer = ws.predictions_path("run-newer-copy", seeded["test_set_id"])
    shutil.copyfile(seeded["predictions_path"], newer)
    time.sleep(0.01)
    ws.record_predictions("run-newer-copy", seeded["test_set_id"], newer, 1)
    assert ws.list_predictions()[0]["run_id"] == "run-newer-copy"
    reader = f"cmp-{uuid.uuid4().hex[:6]}"
    at = _join(study, reader, run_id=seeded["run_id"])
    _grade(at, 0)
    at.button(key="rs_end_early").click().run()
    at.button(key="rs_end_confirm").click().run()
    _ok(at)
    assert at.selectbox(key="rs_results_model").value["run_id"] == seeded["run_id"]


def test_staff_rename_archive_and_restore_a_study_readers_never_see_the_controls(ws, study):
    from core.readers import list_studies

    at = _open()
    at.selectbox(key="rs_study").set_value(study).run()
    at.text_input(key=f"rs_manage_name_{study}").input("renamed study").run()
    _ok(at.button(key=f"rs_manage_rename_{study}").click().run())
    assert any("Renamed to “renamed study”" in s.value for s in at.success)
    assert any(o.startswith("renamed study - ") for o in at.selectbox(key="rs_study").options)
    assert at.button(key=f"rs_manage_archive_{study}").disabled  # until the confirmation is ticked
    at.checkbox(key=f"rs_manage_confirm_{study}").check().run()
    _ok(at.button(key=f"rs_manage_archive_{study}").click().run())
    assert at.selectbox(key="rs_study").options == ["New study..."] and list_studies(ws) == []
    assert at.selectbox(key="rs_restore_archived").value == study
    assert at.selectbox(key="rs_restore_archived").options == [f"renamed study ({study})"]
    _ok(at.button(key="rs_restore_restore").click().run())
    assert any("Restored the reader study “renamed study”" in s.value for s in at.success)
    assert any(o.startswith("renamed study - ") for o in at.selectbox(key="rs_study").options)

    reader = open_page(PAGE, timeout=120, role="reader")
    keys = [w.key or "" for kind in ("button", "checkbox", "text_input", "selectbox") for w in reader.get(kind)]
    assert not any(k.startswith(("rs_manage", "rs_restore")) for k in keys), keys


def test_a_signed_in_reader_who_reloads_is_back_at_the_next_image(ws, study):
    from core.readers import join_study, record_answer

    from core.readers import item_at

    join_study(ws, study, "test-reader")  # open_page signs in as user "test-reader" with the reader role
    for position in (1, 2):
        record_answer(ws, study, "test-reader", item_at(ws, study, "test-reader", position).image_id, "CNV")
    from tests.apptest import signed_in_app

    at = _ok(signed_in_app("reader", 120).run())  # a reload: a new session, the sign-in kept; readers land here
    assert [t.value for t in at.title] == ["Reader study"]
    assert _caption(at) == "Image 3 of 6" and not [b for b in at.button if b.key == "rs_join"]
    assert any("Welcome back: 2 of 6 already graded" in t.value for t in at.toast), [t.value for t in at.toast]


def test_staff_cannot_grade_as_a_reader_and_see_the_progress_instead(ws, study):
    """Issue 21 item 6: a researcher used to type a reader's code, resume that reader's session and change a
    stored answer with no password. Staff now get no reader-code box and no way to join; they see each reader's
    progress (never the answers), and the core refuses an answer from anyone but that reader."""
    from core.readers import item_at, join_study, own_answer, record_answer
    from core.store.access import AccessDenied, Actor

    join_study(ws, study, "dr-victim")
    first = item_at(ws, study, "dr-victim", 1).image_id
    record_answer(ws, study, "dr-victim", first, "CNV", actor=Actor("dr-victim", "reader"))
    for role in ("researcher", "admin"):
        staff = open_page(PAGE, timeout=120, role=role)
        staff.selectbox(key="rs_study").set_value(study).run()
        _ok(staff)
        assert not [b for b in staff.button if b.key in ("rs_join", "rs_aided_join")]
        assert not [t for t in staff.text_input if t.key in ("rs_reader_code", "rs_aided_code")]
        assert any("nobody grades or changes answers for another reader" in i.value for i in staff.info)
        progress_table = next(d.value for d in staff.dataframe if "graded" in d.value.columns)
        assert progress_table.to_dict("records")[0]["reader"] == "dr-victim"
        assert progress_table.to_dict("records")[0]["graded"] == "1 of 6"
        assert "CNV" not in progress_table.to_string()  # progress, never the answers
        with pytest.raises(AccessDenied, match=f"grade needs the role reader; 'test-{role}' \\(role {role}\\)"):
            record_answer(ws, study, "dr-victim", first, "NORMAL", actor=Actor(f"test-{role}", role))
    # Another reader cannot answer for the victim either; the stored answer is untouched.
    with pytest.raises(AccessDenied, match="only reader 'dr-victim', signed in, may grade as 'dr-victim'"):
        record_answer(ws, study, "dr-victim", first, "NORMAL", actor=Actor("dr-other", "reader"))
    assert own_answer(ws, study, "dr-victim", first)["label"] == "CNV"
