"""AppTest of the Explain page on the seeded workspace (tiny test_efficientnet at 64 px, so maps take milliseconds)."""

from __future__ import annotations

import re
import time

from streamlit.testing.v1 import AppTest

from core.explain.gallery import CaseFilter, case_table, select_cases
from core.infer import read_predictions
from core.readers import list_readings
from core.store import Workspace
from tests.apptest import open_page

PAGE = "../pages/explain.py"
TASK_CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")


def _open(seeded: dict, **state) -> AppTest:
    at = open_page(PAGE, timeout=120, run_id=seeded["run_id"], test_set_id=seeded["test_set_id"], **state)
    _ok(at)
    return at

def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _images(at: AppTest) -> list[tuple[str, str]]:
    """(caption, url) of every image shown; the url is a hash of the image's bytes."""
    return [(im.caption, im.url) for element in at.get("image") for im in element.proto.imgs]


def _gallery(at: AppTest):
    return next(frame.value for frame in at.dataframe if {"image_id", "predicted"} <= set(frame.value.columns))


def _wait_for_job(at: AppTest, seconds: float = 60) -> str:
    deadline = time.time() + seconds
    while not at.success and time.time() < deadline:
        time.sleep(0.3)
        at.run()  # the page polls the worker's progress dict; AppTest reruns instead of the fragment timer
    _ok(at)
    assert at.success, "the maps job did not finish"
    return at.success[0].value


def test_gallery_case_view_maps_and_opacity(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # Grad-CAM and occlusion fill the map cache: keep it out of the shared one
    frame, _ = read_predictions(seeded_workspace["predictions_path"])
    wrong = frame[frame["label"] != frame["predicted"]]
    at = _open(seeded_workspace)
    gallery = _gallery(at)
    assert len(wrong), "the seeded tiny model (3 epochs on 24 images) misclassifies some test images"
    assert sorted(gallery["image_id"]) == sorted(wrong["image_id"])  # misclassified by default
    assert (gallery["label"] != gallery["predicted"]).all()
    assert at.button(key="explain_job_start").label == f"Compute maps for these {len(gallery)} cases"
    thumbnails = [(c, u) for c, u in _images(at) if ": true " in c]
    assert len(thumbnails) == min(12, len(gallery))
    at.radio(key="explain_thumbs").set_value("gradcam").run()  # Grad-CAM thumbnails are drawn at once
    _ok(at)
    overlaid = [(c, u) for c, u in _images(at) if ": true " in c]
    assert [c for c, _ in overlaid] == [c for c, _ in thumbnails]
    assert all(u != v for (_, u), (_, v) in zip(thumbnails, overlaid))

    case = at.selectbox(key="explain_case").value
    call = gallery.set_index("image_id").at[case, "predicted"]
    captions = [c for c, _ in _images(at)]
    assert any(c.startswith(case) and "lesion boxes" in c or c == case for c in captions)  # the image itself
    assert f"Grad-CAM for {call}" in captions  # Grad-CAM is computed at once
    assert f"Occlusion for {call}" not in captions  # occlusion waits for a click (slow on CPU)
    assert {"class", "probability"} <= set(at.dataframe[1].value.columns)
    assert any(t.value.startswith(f"Image: {case}\nTrue class: ") for t in at.text)
    # Every reader's answer is shown in full (a narrow table cut the answer column off).
    readings = list_readings(Workspace.open(seeded_workspace["root"]), seeded_workspace["test_set_id"])
    answers = readings[readings["image_id"].astype(str) == case]
    assert len(answers)
    shown = "\n".join(t.value for t in at.text)
    assert all(f"{r}: {a}" in shown for r, a in zip(answers["reader_id"], answers["label"]))

    # Occlusion on request, with a coarse window to keep the test fast.
    at.number_input(key="explain_occlusion_window").set_value(16)
    at.number_input(key="explain_occlusion_stride").set_value(16).run()
    at.button(key=f"explain_compute_occlusion_{call}").click().run()
    _ok(at)
    assert f"Occlusion for {call}" in [c for c, _ in _images(at)]
    # The button goes once the map is there (it stayed and pushed the map out of line).
    assert f"explain_compute_occlusion_{call}" not in [b.key for b in at.button]

    # Opacity redraws the overlays, not the image.
    before = dict(_images(at))
    at.slider(key="explain_opacity").set_value(0.2).run()
    after = dict(_images(at))
    for method in ("Grad-CAM", "Occlusion"):
        assert before[f"{method} for {call}"] != after[f"{method} for {call}"]
    image_caption = next(c for c in before if c.startswith(case) and ": true " not in c)
    assert before[image_caption] == after[image_caption]

    # Why this call and not another class: a second row of maps for that class.
    other = next(c for c in TASK_CLASSES if c != call)
    at.selectbox(key="explain_contrast").set_value(other).run()
    _ok(at)
    assert f"Grad-CAM for {other}" in [c for c, _ in _images(at)]


def test_background_job_completes_then_hits_the_cache(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the job fills the map cache: keep it out of the shared workspace
    at = _open(seeded_workspace)
    n = len(_gallery(at))
    # Settings no other test uses, so the first job computes its occlusion maps.
    at.number_input(key="explain_occlusion_window").set_value(32)
    at.number_input(key="explain_occlusion_stride").set_value(32)
    at.selectbox(key="explain_occlusion_baseline").set_value("mean").run()
    at.button(key="explain_job_start").click().run()
    first = _wait_for_job(at)
    computed, cached = (int(v) for v in re.search(r"(\d+) computed and (\d+) found in the cache", first).groups())
    assert f"{2 * n} of {2 * n} maps ready for {n} cases" in first
    assert computed >= n  # every occlusion map was new
    assert computed + cached == 2 * n
    assert any(c.value.startswith(f"{2 * n} maps of this gallery are computed") for c in at.caption)
    at.button(key="explain_job_start").click().run()
    second = _wait_for_job(at)
    assert f"0 computed and {2 * n} found in the cache" in second
    # A reload (a new session, no job id in its state) finds the job of these cases and settings on the board.
    reloaded = _open(seeded_workspace)
    reloaded.number_input(key="explain_occlusion_window").set_value(32)
    reloaded.number_input(key="explain_occlusion_stride").set_value(32)
    reloaded.selectbox(key="explain_occlusion_baseline").set_value("mean").run()
    assert [s.value for s in reloaded.success] == [second]
    # Scored against the demo's lesion boxes: the pointing-game summary per method.
    summary = next(f.value for f in at.dataframe if "pointing_rate" in f.value.columns)
    assert set(summary["method"]) == {"occlusion", "gradcam"}


def test_filters_change_the_gallery(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the page stores what it is given: keep it out of the shared workspace
    frame, _ = read_predictions(seeded_workspace["predictions_path"])
    at = _open(seeded_workspace)
    at.radio(key="explain_outcome").set_value("all").run()
    assert len(_gallery(at)) == len(frame)
    at.multiselect(key="explain_true").set_value(["CNV"]).run()
    assert set(_gallery(at)["label"]) == {"CNV"}
    ws = Workspace.open(seeded_workspace["root"])
    cases = case_table(frame, list(TASK_CLASSES), list_readings(ws, seeded_workspace["test_set_id"]))
    cnv = cases[cases["label"] == "CNV"]
    top = float(cnv["confidence"].max())
    assert top < 0.99, "the seeded tiny model is unsure of every case"
    at.slider(key="explain_confidence").set_value((0.99, 1.0)).run()
    _ok(at)
    assert any("No case matches" in i.value for i in at.info)
    bound = min(1.0, round(top + 0.01, 2))
    at.slider(key="explain_confidence").set_value((0.0, bound)).run()
    _ok(at)
    assert sorted(_gallery(at)["image_id"]) == sorted(cnv["image_id"])
    # Readings exist (simulated readers), so the reader filter is offered; it selects what core selects.
    at.slider(key="explain_confidence").set_value((0.0, 1.0))
    at.multiselect(key="explain_true").set_value([])
    at.selectbox(key="explain_readers").set_value("readers_split").run()
    _ok(at)
    expected = select_cases(cases, CaseFilter(outcome="all", disagreement="readers_split"))
    assert len(expected), "the seeded simulated readers disagree on some images"
    assert _gallery(at)["image_id"].tolist() == expected["image_id"].tolist()

    # A confusion-matrix cell chosen on the Performance page restricts the gallery to its cases.
    ids = frame["image_id"].astype(str).tolist()[:2]
    cell = {"run_id": seeded_workspace["run_id"], "test_set_id": seeded_workspace["test_set_id"], "true": "CNV",
            "called": "NORMAL", "image_ids": ids}
    at = _open(seeded_workspace, confusion_cell=cell)
    at.toggle(key="explain_use_cell").set_value(True).run()
    _ok(at)
    assert sorted(_gallery(at)["image_id"]) == sorted(ids)


def test_hidden_from_a_reader_mid_study(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the test creates a study: keep it out of the shared workspace
    from core.data.ingest import load_registered
    from core.readers import create_study, join_study

    ws = Workspace.open(seeded_workspace["root"])
    ds = load_registered(ws, seeded_workspace["test_set_id"])
    study_id = create_study(ws, seeded_workspace["test_set_id"], ds, "oct-kermany", subset_size=2, seed=5,
                            name="blind-explain")
    join_study(ws, study_id, "blinding-explain")
    at = _open(seeded_workspace, reader_session={"study_id": study_id, "reader_id": "blinding-explain"})
    assert any("reader study" in w.value for w in at.warning)
    assert not _images(at) and not at.dataframe  # no calls, probabilities or maps


def test_the_one_case_picker_drops_a_case_the_filter_removed(own_seeded_workspace):
    # "One case" kept showing a case after the filter above had removed it from the gallery.
    at = _open(own_seeded_workspace)
    at.radio(key="explain_outcome").set_value("all").run()
    _ok(at)
    gallery = _gallery(at).set_index("image_id")
    case = gallery.index[-1]
    at.selectbox(key="explain_case").set_value(case).run()
    _ok(at)
    label = str(gallery.at[case, "label"])
    others = [c for c in TASK_CLASSES if c != label and (gallery["label"] == c).any()]
    at.multiselect(key="explain_true").set_value(others).run()
    _ok(at)
    remaining = _gallery(at)["image_id"].tolist()
    assert case not in remaining
    assert at.selectbox(key="explain_case").value == remaining[0]
    assert not any(t.value.startswith(f"Image: {case}\n") for t in at.text)


def test_a_cell_clicked_on_performance_starts_the_explain_filter(own_seeded_workspace):
    # The cell clicked on Performance was forgotten: Explain opened on "misclassified" with its toggle off.
    from dashboard import state

    frame, _ = read_predictions(own_seeded_workspace["predictions_path"])
    ids = frame["image_id"].astype(str).tolist()[:2]
    cell = {"run_id": own_seeded_workspace["run_id"], "test_set_id": own_seeded_workspace["test_set_id"],
            "true": "CNV", "called": "NORMAL", "image_ids": ids}
    clicked = (TASK_CLASSES.index("CNV"), TASK_CLASSES.index("NORMAL"))
    at = _open(own_seeded_workspace, **{state.CONFUSION_CELL: cell, state.CELL_APPLIED: clicked})
    assert at.toggle(key="explain_use_cell").value is True
    assert sorted(_gallery(at)["image_id"]) == sorted(ids)
    # A cell Performance only showed (its default, never clicked) leaves the default filter: misclassified.
    at = _open(own_seeded_workspace, **{state.CONFUSION_CELL: cell})
    assert at.toggle(key="explain_use_cell").value is False


def test_a_table_click_after_a_filter_change_picks_the_row_it_shows():
    # The row click was remembered by row number: after a filter change, row 2 (another case) was ignored.
    from dashboard.explain_ui import row_click_case

    assert row_click_case([2], ["a", "b", "c"], None) == "c"
    assert row_click_case([2], ["a", "b", "c"], "c") is None  # already applied: the picker may move on
    assert row_click_case([2], ["d", "e", "f"], "c") == "f"  # same row, new gallery: its case
    assert row_click_case([5], ["d", "e", "f"], "c") is None and row_click_case([], ["d"], None) is None
