"""Presentation mode: every slide of the seeded demo renders with navigation as the only widgets, from the
shareable URL too; the slides' words come from the report's numbers."""

from __future__ import annotations

import copy

from streamlit.testing.v1 import AppTest

from core.metrics.penalties import Penalty
from core.report import build_report
from core.report.slides import build_slides, slide_pages
from core.store import Workspace
from dashboard.widgets import plain
from tests.apptest import open_page

PAGE = "../pages/present.py"
INPUT_WIDGETS = ("selectbox", "multiselect", "slider", "select_slider", "text_input", "number_input", "checkbox",
                 "toggle", "radio", "text_area", "date_input", "time_input", "color_picker")


def _texts(at: AppTest) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_every_slide_renders_with_only_previous_and_next(own_seeded_workspace):
    ids = own_seeded_workspace
    at = open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    from dashboard.audit_ui import cached_shift

    ws = Workspace.open(ids["root"])
    report = build_report(ws, ids["run_id"], ids["test_set_id"])
    expected = build_slides(report, cached_shift(ws, ids["test_set_id"], report))  # the copy may hold an audit
    titles = []
    for i, slide in enumerate(expected):
        assert not at.exception, [e.value for e in at.exception]
        assert [b.label for b in at.button] == ["Previous", "Next"]
        assert all(len(at.get(kind)) == 0 for kind in INPUT_WIDGETS)
        text = _texts(at)
        assert plain(slide.title) in text and plain(f"{i + 1} / {len(expected)}") in text
        assert all(plain(fact.text) in text for fact in slide.facts), [f.text for f in slide.facts if plain(f.text) not in text]
        titles.append(slide.title)
        if i < len(expected) - 1:
            at.button(key="present_next").click().run()
    assert at.button(key="present_next").disabled and len(set(titles)) == len(expected)
    at.button(key="present_previous").click().run()
    assert plain(expected[-2].title) in _texts(at)


def test_readers_slide_says_what_the_model_and_each_reader_found(seeded_workspace):
    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    readers = next(s for s in build_slides(report) if s.key == "readers")
    model = report["readers"]["model"]
    assert readers.facts[0].text.startswith(f"The model found {model['tp']} of {model['tp'] + model['fn']} ")
    assert len(readers.facts) >= 1 + len(report["readers"]["readers"])
    one_alarm = copy.deepcopy(report)  # counts take their noun's number: "1 false alarm", not "1 false alarms"
    one_alarm["readers"]["model"].update(fp=1, tn=5)
    for row in one_alarm["readers"]["comparison"]:
        row.update(fp=1, tn=5)
    texts = [f.text for s in build_slides(one_alarm) if s.key == "readers" for f in s.facts]
    assert "raised 1 false alarm among 6 other scans." in texts[0]
    assert all("false alarms" not in t for t in texts)
    failures = next(s for s in build_slides(report) if s.key == "failures")
    assert [c["image_id"] for c in failures.cases] == [c["image_id"] for c in report["failures"]["cases"]]
    assert report["failures"]["rule"] in failures.facts[0].explanation


def test_shareable_url_opens_presentation_mode(own_seeded_workspace):
    ids = own_seeded_workspace
    from tests.apptest import signed_in_app

    at = signed_in_app(timeout=120)  # slides show results: a researcher or admin is signed in
    at.query_params["present"] = "1"
    at.query_params["run"] = ids["run_id"]
    at.query_params["test_set"] = ids["test_set_id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert plain("What the model does, and on what data") in _texts(at)
    assert [b.label for b in at.button] == ["Previous", "Next"]


def _failure_captions(at: AppTest) -> list[str]:
    while "Where it fails" not in " ".join(m.value for m in at.markdown):
        at.button(key="present_next").click().run()
    return [c.value for c in at.caption if "the model said" in c.value]


def test_failure_slide_shows_a_cached_map_and_says_when_there_is_none(own_seeded_workspace):
    from core.explain import MapCache
    from core.explain.case_images import CaseImages
    from core.explain.case_maps import case_map
    from core.explain.explain_model import ExplainModel
    from core.models.checkpoint import find_checkpoint

    ids = own_seeded_workspace
    at = open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    captions = _failure_captions(at)
    assert len(captions) == 3 and all("Map not computed" in c for c in captions)
    ws = Workspace.open(ids["root"])
    first = build_report(ws, ids["run_id"], ids["test_set_id"])["failures"]["cases"][0]
    model = ExplainModel.load(str(find_checkpoint(ws.runs_dir / ids["run_id"])), run_id=ids["run_id"], device="cpu")
    images = CaseImages.from_workspace(ws, ids["test_set_id"])
    model_classes = list(build_report(ws, ids["run_id"], ids["test_set_id"])["task"]["classes"])
    target = model_classes.index(first["predicted"])
    assert case_map(model, images, first["image_id"], target, "occlusion", {}, MapCache.for_workspace(ws)) is not None
    at = open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    captions = _failure_captions(at)
    assert "(from the Explain page's cache)" in captions[0] and "Map not computed" in captions[1]


def test_what_is_not_known_says_the_audit_shift_verdict(seeded_workspace):
    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    unknown = [f for s in slide_pages(build_slides(report), "unknown") for f in s.facts]
    assert any("has not been checked" in f.text for f in unknown)
    flagged = slide_pages(build_slides(report, {"flagged": True, "reasons": ["brightness differs"]}), "unknown")
    assert any(f.text.startswith("Shift warning") and "brightness differs" in f.text
               for s in flagged for f in s.facts)


def test_slides_show_only_informative_intervals_and_count_the_cases_they_show(seeded_workspace):
    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    flat = copy.deepcopy(report)
    for h in flat["headline"]:
        if h.get("value") is not None:
            h["low"] = h["high"] = h["value"]  # zero width: "between 100% and 100%" said nothing
    texts = " ".join(f.text for s in build_slides(flat) for f in s.facts)
    assert "confident" not in texts
    assert "confident" in " ".join(f.text for s in build_slides(report) for f in s.facts)
    two = copy.deepcopy(report)
    two["failures"]["cases"] = two["failures"]["cases"][:2]
    failures = next(s for s in build_slides(two) if s.key == "failures")
    assert "Two of them:" in failures.facts[0].text  # it said "Three of them:" whatever it showed


def test_slides_use_the_penalty_matrix_in_use_in_the_session(own_seeded_workspace):
    """The Report page and the slides share one cached report: a matrix chosen on the Penalties page reaches both
    (the slides used the workspace's saved matrix, cached without it)."""
    from core.data.tasks import get_task
    from core.report.active_penalty import resolve_penalty
    from dashboard.state import PENALTY_STATE_KEY

    task = get_task("oct-kermany")
    uniform = [[0.0 if i == j else 1.0 for j in range(4)] for i in range(4)]
    # What the Penalties page leaves in the session (dashboard.evaluation.set_active_penalty): a Penalty per task,
    # source "edited". Only the session holds it: the workspace's saved matrix is something else.
    in_use = Penalty.of(uniform, task.classes, "all mistakes alike", source="edited")
    ids = own_seeded_workspace
    assert resolve_penalty(Workspace.open(ids["root"]), task).name != in_use.name
    at = open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"],
                   **{PENALTY_STATE_KEY: {task.name: in_use}})
    while "What it would cost" not in " ".join(m.value for m in at.markdown):
        at.button(key="present_next").click().run()
    assert plain("“all mistakes alike”") in _texts(at)


def test_slides_name_the_model_in_plain_words_and_show_no_file_name(seeded_workspace):
    """`efficientnet_lite012` became "an ensemble of three EfficientNet-Lite networks" (the backbone registry's
    plain_name); failure cases are numbered, never named by their image file; a path typed as a name is not shown."""
    import copy
    import re

    from core.models.registry import get_backbone, list_backbones
    from core.report.slides import case_caption

    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    ensemble = copy.deepcopy(report)
    ensemble["model"].update(backbone="efficientnet_lite012", training_dataset="/srv/data/chest_xray/train")
    what = " ".join(f.text for f in build_slides(ensemble)[0].facts)
    assert "an ensemble of three EfficientNet-Lite networks" in what
    assert "efficientnet_lite012" not in what and "/srv/data" not in what
    assert get_backbone(report["model"]["backbone"]).plain_name in " ".join(f.text for f in build_slides(report)[0].facts)
    assert all(spec.plain_name for spec in list_backbones())
    slides = build_slides(report)
    failures = next(s for s in slides if s.key == "failures")
    captions = [case_caption(i, c) for i, c in enumerate(failures.cases, start=1)]
    assert captions[0].startswith("Case 1: truly ")
    words = " ".join([s.title for s in slides] + [f.text + f.explanation for s in slides for f in s.facts] + captions)
    image_ids = [c["image_id"] for c in report["failures"]["cases"]]
    assert image_ids and not any(i in words for i in image_ids)
    assert not re.search(r"\.(jpe?g|png|npz|csv)\b", words, re.IGNORECASE)


def test_the_roc_slide_shows_the_model_with_every_reader(seeded_workspace):
    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    roc = next(s for s in build_slides(report) if s.key == "roc")
    names = {trace.name for trace in roc.figure.data}
    assert {r["reader_id"] for r in report["readers"]["points"]} <= names
    assert any(n.startswith("model ROC") for n in names)
    assert roc.figure.layout.height is None  # the page sizes it by the screen (assets/present.css)


def test_a_slide_with_more_than_fits_continues_on_the_next(seeded_workspace):
    """The "What is not known" slide overflowed a screen on a real run (shift reasons, duplicates, overlap...):
    facts are shared out by lines, each slide within SLIDE_LINES, none lost, none repeated."""
    import copy

    from core.report.slides import SLIDE_LINES, fact_lines

    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"])
    crowded = copy.deepcopy(report)
    crowded["audit"] = {"shift": {"flagged": True, "reasons": [f"reason {i}: the brightness differs a lot" * 2
                                                               for i in range(4)]},
                        "exact_duplicates": 6, "exact_across": 3, "patients_across": 56}
    whole = build_slides(report)
    slides = build_slides(crowded)
    unknown = slide_pages(slides, "unknown")
    assert len(unknown) >= 2 and unknown[0].title.startswith("What is not known (1 of ")
    assert all(sum(fact_lines(f) for f in s.facts) <= SLIDE_LINES or len(s.facts) == 1 for s in unknown)
    texts = [f.text for s in unknown for f in s.facts]
    assert len(texts) == len(set(texts)) and any("56 patients" in t for t in texts)
    assert len({s.title for s in slides}) == len(slides) and len(whole) >= 6
