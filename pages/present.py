"""Presentation mode: one model on one test set told in plain words, one slide at a time, only Previous / Next."""

from __future__ import annotations

import streamlit as st

from core.errors import InputError
from core.infer.predictions import task_of
from core.report.slides import build_slides, case_caption
from dashboard import state
from dashboard.audit_ui import cached_shift
from dashboard.common import ROOT, PredictionsFile, get_workspace, load_predictions, thumbnail
from dashboard.evaluation import session_report
from dashboard.widgets import plain

st.html(f"<style>{(ROOT / 'assets' / 'present.css').read_text()}</style>")  # our own static CSS only
ws = get_workspace()
selection = state.current_selection()
run_id = st.query_params.get(state.PRESENT_RUN_PARAM) or selection.run_id
test_set_id = st.query_params.get(state.PRESENT_TEST_SET_PARAM) or selection.test_set_id
row = ws.find_predictions(run_id, test_set_id) if run_id and test_set_id else None
if row is None:
    st.error("Nothing to present: choose a model and a test set with predictions on the Performance page, or open "
             f"a link with ?{state.PRESENT_PARAM}=1&{state.PRESENT_RUN_PARAM}=RUN&{state.PRESENT_TEST_SET_PARAM}="
             "TEST_SET.", icon=":material/error:")
    st.stop()
if st.query_params.get(state.PRESENT_PARAM) != "1":
    # Opened from the page list: become the shareable link, which dashboard/app.py routes with no sidebar at all
    # (no navigation, no admin controls), the same view a kiosk or a shared link gets.
    st.query_params.update({state.PRESENT_PARAM: "1", state.PRESENT_RUN_PARAM: run_id,
                            state.PRESENT_TEST_SET_PARAM: test_set_id})
    st.rerun()
try:
    # The Report page's numbers: the penalty matrix in use in this session and the readings stored now.
    file = PredictionsFile.at(row["path"])
    task = task_of(load_predictions(file)[1], (ws.get_run(run_id) or {}).get("task"))
    # The threshold in use: the user's when chosen, else the model's own point (core.metrics.threshold_in_use).
    report = session_report(ws, run_id, test_set_id, file.mtime, task,
                            None if selection.threshold is None else selection.threshold_or_default)
except (InputError, OSError) as exc:
    st.error("The presentation could not be prepared.", icon=":material/error:")
    st.code(str(exc), language=None, wrap_lines=True)
    st.stop()

def _cached_map(record: dict, case: dict):
    """The case's map for the called class at default parameters, if the Explain page already computed one (the
    first registered method that has it): (overlay image, method title), else (None, None). Never computes."""
    from core.explain import MapCache
    from core.explain.case_maps import case_map
    from core.explain.overlay import overlay
    from core.explain.registry import list_explainers
    from dashboard.explain_ui import images_for, model_for_run

    try:
        model, images = model_for_run(ws, run_id), images_for(ws, record)
        image = images.image(case["image_id"])
        target = list(report["task"]["classes"]).index(case["predicted"])
        for explainer in list_explainers():
            amap = case_map(model, images, case["image_id"], target, explainer.name, {}, MapCache.for_workspace(ws),
                            compute=False, image=image)
            if amap is not None:
                return overlay(image, amap), explainer.title
    except (InputError, OSError, ValueError):
        pass
    return None, None


slides = build_slides(report, cached_shift(ws, test_set_id, report))
position = min(max(int(st.session_state.get(state.PRESENT_SLIDE, 0)), 0), len(slides) - 1)


def _go(step: int) -> None:
    st.session_state[state.PRESENT_SLIDE] = min(max(position + step, 0), len(slides) - 1)


slide = slides[position]
with st.container(key="slide"):
    st.markdown(f"# {plain(slide.title)}")
    for i, fact in enumerate(slide.facts):
        with st.container(key=f"fact_{i}"):
            st.markdown(plain(fact.text))
            if fact.explanation:
                st.caption(plain(fact.explanation))
    if slide.figure is not None:
        with st.container(key="slide_figure"):  # assets/present.css sizes it by the screen's height
            st.plotly_chart(slide.figure, height="stretch", key=f"slide_figure_{slide.key}",
                            config={"displayModeBar": False, "responsive": True})
    if slide.cases:
        record = ws.get_dataset(test_set_id) or {}
        for number, (column, case) in enumerate(zip(st.columns(len(slide.cases)), slide.cases), start=1):
            picture, method = _cached_map(record, case)
            try:
                column.image(picture if picture is not None else thumbnail(ws, record, case["image_id"], 300),
                             width=300)
            except InputError:
                column.caption("Image not readable.")  # the reader's message names the file: not on a slide
            where = (f"{method} map for {case['predicted']} (from the Explain page's cache)." if method else
                     "Map not computed: open the case on the Explain page to compute it.")
            column.caption(plain(f"{case_caption(number, case)} {where}"))
with st.container(key="present_nav", horizontal=True, horizontal_alignment="center"):
    st.button("Previous", key="present_previous", icon=":material/arrow_back:", on_click=_go, args=(-1,),
              disabled=position == 0)
    st.markdown(plain(f"{position + 1} / {len(slides)}"))
    st.button("Next", key="present_next", icon=":material/arrow_forward:", on_click=_go, args=(1,),
              disabled=position == len(slides) - 1, type="primary")
    st.page_link(ROOT / "pages" / "home.py", label="Leave the presentation", icon=":material/close:")
