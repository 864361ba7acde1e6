"""Reader study: a clinician grades images one at a time, blinded, every answer saved at once; results at the end."""

from __future__ import annotations

import streamlit as st

from core.errors import InputError
from core.readers import get_study, progress
from core.store.access import READER
from dashboard.aided_ui import after_session, aided_start_screen
from dashboard.common import ensure_demo_ui, get_workspace
from dashboard.experts_ui import reader_results_view
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.reader_ui import header, reading_screen, resume_own_reading, start_screen
from dashboard.widgets import show_error

st.title("Reader study")
ws = get_workspace()
ensure_demo_ui(ws)
session = st.session_state.get(state.READER_SESSION)
if session is None and current_actor().role == READER:
    # A signed-in reader reads under their own name: after a reload (the browser session's sign-in survives it),
    # back to the study they are in the middle of, without choosing it again.
    session = resume_own_reading(ws, current_actor().user_id)

if session is None:
    st.caption("Grade images yourself and see how you compare with the model. The study is **blinded**: no true "
               "label, no model output and no other reader's answers are shown until you finish (or end early). "
               "Every answer is saved the moment you give it, so closing the tab or a restart loses nothing: sign "
               "in again to continue where you stopped. Each reader grades only under their own account.")
    modes = {"standard": "Standard study", "aided": "Aided vs unaided (two sessions)"}
    mode = st.radio("Study type", list(modes), format_func=modes.get, horizontal=True, key="rs_mode")
    if mode == "aided":
        aided_start_screen(ws)
    else:
        start_screen(ws)
    st.stop()

try:
    study = get_study(ws, session["study_id"])
    status = progress(ws, study.id, session["reader_id"])
except InputError as exc:  # e.g. another workspace was opened on the home page
    st.session_state.pop(state.READER_SESSION, None)
    show_error("Your reading session could not be found in this workspace.", exc)
    st.stop()

header(study, session["reader_id"])
if not status.done:
    reading_screen(ws, study, session["reader_id"])
elif "aided_id" in session:
    after_session(ws, session)
else:
    ended = "ended early" if status.status == "ended_early" else "finished"
    st.success(f"You {ended}: {status.answered} of {status.total} images graded. Your results are below; the "
               "truth and the model's output are now shown to you.", icon=":material/task_alt:")
    reader_results_view(ws, study, session["reader_id"])
