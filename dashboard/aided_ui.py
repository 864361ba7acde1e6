"""Reader study, aided-vs-unaided mode: create or join, washout; the reading screen (dashboard.reader_ui) shows the
model's output in the aided session only."""

from __future__ import annotations

import time

import streamlit as st

from core.errors import InputError
from core.readers import get_study, passwords_configured
from core.readers.auth import signed_in_with_password
from core.readers.aided_study import (AIDED, DONE, UNAIDED, WASHOUT, create_aided_study, get_aided_study,
                                      join_aided, list_aided_studies, reader_phase)
from core.store import Workspace
from core.store.access import allowed
from dashboard.common import load_predictions
from dashboard import state
from dashboard.access_ui import current_actor, reader_code
from dashboard.common import registered_dataset
from dashboard.experts_ui import _predictions_for, reader_results_view
from dashboard.reader_ui import STAFF_NOTE, enter_session, join_or_explain, pick_test_set, study_progress_view
from dashboard.widgets import plain, show_error

NEW = "__new_aided__"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _enter(session) -> None:
    enter_session({"study_id": session.study_id, "reader_id": session.session_code, "aided_id": session.aided_id,
                   "phase": session.phase, "base_reader": session.reader_id})


def _explain_phase(phase: str, opens: float | None) -> None:
    if phase == WASHOUT:
        st.info(f"Your unaided session is closed. The aided session opens after the washout, on {_when(opens)}; "
                "until then your earlier answers and results stay hidden.", icon=":material/hourglass_top:")
    elif phase == DONE:
        st.success("You have closed both sessions of this study.", icon=":material/task_alt:")


def aided_start_screen(ws: Workspace) -> None:
    """Pick or create an aided-vs-unaided study and join the session the reader is due for."""
    st.caption("Each reader grades the same images twice, in separate sessions: first **unaided** (no model "
               "output), then, after a washout, **aided** (the model's output shown) in a fresh order. Your "
               "unaided answers are never shown in the aided session, and results appear only after both.")
    reader_id = reader_code()  # None for staff: they create studies and follow them, never grade
    if reader_id is None:
        st.info(STAFF_NOTE, icon=":material/supervisor_account:")
    password = st.text_input("Reader password", type="password", key="rs_aided_password") \
        if reader_id is not None and passwords_configured(ws) and not signed_in_with_password(
            ws, reader_id, current_actor()) else None  # one sign-in is enough (issue 22)
    picked = pick_test_set(ws, key="rs_aided_test_set")
    if picked is None:
        return
    row, task = picked
    test_set_id = row["id"]
    studies = {s.id: f"{s.name} (washout {s.washout_days:g} days)" for s in list_aided_studies(ws, test_set_id)}
    if state.READER_AIDED_PENDING in st.session_state:
        st.session_state[state.READER_AIDED_STUDY] = st.session_state.pop(state.READER_AIDED_PENDING)
    if allowed(current_actor(), "create_study"):
        studies[NEW] = "New aided-vs-unaided study..."
    chosen = st.selectbox("Study", list(studies), format_func=studies.get, key=state.READER_AIDED_STUDY)
    if chosen == NEW:
        _new_form(ws, row, task)
        return
    if reader_id is None:
        aided = get_aided_study(ws, chosen)
        study_progress_view(ws, aided.unaided_study_id, key="rs_aided_progress_unaided", title="Unaided sessions")
        study_progress_view(ws, aided.aided_study_id, key="rs_aided_progress_aided", title="Aided sessions")
        return
    if reader_id.strip():
        try:
            _explain_phase(*reader_phase(ws, chosen, reader_id))
        except InputError as exc:
            show_error("That reader code cannot be used here.", exc)
            return
    if st.button("Start or resume my session", key="rs_aided_join", type="primary", icon=":material/play_arrow:"):
        session = join_or_explain(lambda: join_aided(ws, chosen, reader_id, password, actor=current_actor()))
        if session is None:
            return
        if session.phase in (UNAIDED, AIDED):
            _enter(session)
            st.rerun()
        _explain_phase(session.phase, session.available_at)


def _new_form(ws: Workspace, row: dict, task) -> None:
    models = _predictions_for(ws, row["id"])
    if not models:
        st.info("An aided session shows a model's output: run a model on this test set first.")
        return
    runs = {r["id"]: r for r in ws.list_runs(include_archived=True)}
    n_images = int(row.get("n_images") or 1)
    with st.form("rs_aided_new"):
        model = st.selectbox("Model whose output the aided session shows", range(len(models)), key="rs_aided_model",
                             format_func=lambda i: runs.get(models[i]["run_id"], {}).get("name", models[i]["run_id"]))
        size = st.number_input("Images to grade", 1, n_images, min(40, n_images), key="rs_aided_size")
        washout = st.number_input("Washout (days) between the sessions", 0.0, 365.0, 28.0, step=1.0,
                                  key="rs_aided_washout", help="Memory of the images fades; 4 weeks is usual.")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="rs_aided_seed")
        created = st.form_submit_button("Create study", type="primary")
    if created:
        try:
            frame = load_predictions(models[int(model)]["path"])[0]
            aided_id = create_aided_study(ws, row["id"], registered_dataset(ws, row), task, frame,
                                          subset_size=int(size), seed=int(seed), washout_days=float(washout),
                                          actor=current_actor())
        except InputError as exc:
            show_error("The study was not created.", exc)
            return
        st.session_state[state.READER_AIDED_PENDING] = aided_id
        st.rerun()


def after_session(ws: Workspace, session: dict) -> None:
    """Shown when the current session is closed: the washout, the aided session, or both sessions' results."""
    phase, opens = reader_phase(ws, session["aided_id"], session["base_reader"])
    if phase == AIDED:
        st.success("Unaided session closed. Your aided session is open now (the washout has passed).",
                   icon=":material/task_alt:")
        if st.button("Start the aided session", key="rs_aided_next", type="primary"):
            _enter(join_aided(ws, session["aided_id"], session["base_reader"], actor=current_actor()))
            st.rerun()
        return
    _explain_phase(phase, opens)
    if phase == DONE:
        study = get_study(ws, session["study_id"])
        st.markdown(f"**Your results, {plain(session['phase'])} session**")
        reader_results_view(ws, study, session["reader_id"], key="rs_aided_results")
