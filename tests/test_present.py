"""Presentation mode: every slide of the seeded demo renders with navigation as the only widgets, from the
shareable URL too; the slides' words come from the report's numbers."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.report import build_report
from core.report.slides import build_slides
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
    unknown = {s.key: s for s in build_slides(report)}["unknown"]
    assert any("has not been checked" in f.text for f in unknown.facts)
    flagged = {s.key: s for s in build_slides(report, {"flagged": True, "reasons": ["brightness differs"]})}
    assert any(f.text.startswith("Shift warning") and "brightness differs" in f.text
               for f in flagged["unknown"].facts)


def test_slides_show_only_informative_intervals_and_count_the_cases_they_show(seeded_workspace):
    import copy

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
    uniform = [[0.0 if i == j else 1.0 for j in range(4)] for i in range(4)]
    ids = own_seeded_workspace
    at = open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"],
                   penalty_matrix={"oct-kermany": uniform}, penalty_matrix_name={"oct-kermany": "all mistakes alike"})
    while "What it would cost" not in " ".join(m.value for m in at.markdown):
        at.button(key="present_next").click().run()
    assert plain("“all mistakes alike”") in _texts(at)
