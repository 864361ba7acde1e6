"""Reader-study UI: who is reading, which study, and the blinded grading screen (image, zoom, class buttons)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from PIL import Image

from core.data.images import open_image
from core.data.tasks import Task, get_task
from core.errors import InputError, StorageError
from core.readers import (CONFIDENCE_LEVELS, ReaderAuthError, Study, create_study, end_early, finish, item_at,
                          join_study, list_studies, next_item, own_answer, passwords_configured, progress,
                          record_answer)
from core.readers.aided_study import AIDED, model_output
from core.readers.study import study_progress
from core.readers.ui_support import open_reading_of, reader_study_on
from core.store import Workspace
from core.readers.auth import signed_in_with_password
from core.store.access import allowed, any_formal_study
from dashboard import state
from dashboard.access_ui import current_actor, live_actor, reader_code, signed_in_here
from dashboard.common import registered_dataset
from dashboard.experts_ui import demo_test_set_id, ensure_demo_readers
from dashboard.lifecycle_ui import STUDY, manage_panel, restore_panel, show_lifecycle_message
from dashboard.widgets import plain, show_error

NEW_STUDY = "__new__"
DISPLAY_PIXELS = 900  # long side of the shown image: small scans are enlarged so detail is visible
CONFIDENCE_HELP = "1 = a guess, 5 = certain"  # in the label: "1 - a guess" on the segment pushed 5 out of the column


@st.cache_resource(show_spinner=False, max_entries=64)
def _image(path: str) -> Image.Image:
    return open_image(path)


def study_image(ws: Workspace, study: Study, image_id: str, path: str | None) -> Image.Image:
    """The image to grade, from the path the study recorded (else found in the test set by its id)."""
    if path:
        return _image(path)
    row = ws.get_dataset(study.test_set_id)
    if row is None:
        raise InputError(f"test set {study.test_set_id!r} is no longer registered")
    dataset = registered_dataset(ws, row)
    position = dataset.row_of(image_id)
    if position is None:
        raise InputError("this image is no longer in the test set")
    return _image(str(dataset.table["path"].iat[position]))


def zoom_image(image: Image.Image, zoom: float, centre_x: float, centre_y: float,
               display: int = DISPLAY_PIXELS) -> Image.Image:
    """The region 1/zoom of the image's size around (centre_x, centre_y) (fractions of width and height, kept
    inside the image), resized so its long side is `display` pixels."""
    width, height = image.size
    zoom = max(1.0, float(zoom))
    crop_w, crop_h = width / zoom, height / zoom
    left = min(max(centre_x * width - crop_w / 2, 0.0), width - crop_w)
    top = min(max(centre_y * height - crop_h / 2, 0.0), height - crop_h)
    region = image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
    scale = display / max(region.size)
    return region.resize((max(1, round(region.width * scale)), max(1, round(region.height * scale))),
                         Image.Resampling.LANCZOS)


def _usable_test_sets(ws: Workspace) -> list[tuple[dict, Task]]:
    out = []
    for row in ws.list_datasets(role="test_set"):
        try:
            task = get_task(row["task"])
        except (InputError, OSError):
            continue  # a test set whose task file went missing cannot be graded
        if task.kind != "multilabel":
            out.append((row, task))
    return out


def _default_test_set(ws: Workspace, test_set_ids: list[str]) -> str:
    """The test set selected elsewhere if it can be graded, else the newest one the selected run has predictions
    on, else the newest with any model's predictions: not simply the newest (a fresh upload no model has seen)."""
    selection = state.current_selection()
    if selection.test_set_id in test_set_ids:
        return selection.test_set_id
    predicted = ws.list_predictions()  # newest first
    for rows in ([r for r in predicted if r["run_id"] == selection.run_id], predicted):
        found = next((r["dataset_id"] for r in rows if r["dataset_id"] in test_set_ids), None)
        if found is not None:
            return found
    return test_set_ids[0]


def pick_test_set(ws: Workspace, key: str) -> tuple[dict, Task] | None:
    """The test set to grade (registry row and task); None, with a note, when there is none yet."""
    test_sets = _usable_test_sets(ws)
    if not test_sets:
        st.info("No test set to grade yet: add one on the **Test sets** page.")
        return None
    names = {row["id"]: row["name"] for row, _ in test_sets}
    test_set_id = st.selectbox("Test set", list(names), format_func=names.get, key=key,
                               index=list(names).index(_default_test_set(ws, list(names))))
    return next((r, t) for r, t in test_sets if r["id"] == test_set_id)


def join_or_explain(join):
    """Run `join` (a reader joining a study); a wrong password or a refused code is shown, and None returned."""
    try:
        return join()
    except ReaderAuthError as exc:  # core says what is missing: the password typed, or one on the account
        st.error(plain(f"Not admitted: {exc}"), icon=":material/lock:")
    except InputError as exc:
        show_error("Could not start reading.", exc)
    return None


def enter_session(session: dict) -> None:
    """Make `session` ({"study_id", "reader_id", ...}) this browser's reading session, from its first open image."""
    st.session_state[state.READER_SESSION] = session
    st.session_state[state.READER_POSITION] = None
    st.session_state.pop(state.READER_SHOWN, None)


def resume_own_reading(ws: Workspace, reader_id: str) -> dict | None:
    """Re-enter the study `reader_id` is still reading (None when there is none), with a welcome-back note."""
    study_id = open_reading_of(ws, reader_id)
    if study_id is None:
        return None
    status = progress(ws, study_id, reader_id)
    enter_session({"study_id": study_id, "reader_id": reader_id})
    st.session_state[state.READER_FLASH] = (f"Welcome back: {status.answered} of {status.total} already graded; "
                                            "carry on where you stopped.")
    return st.session_state[state.READER_SESSION]


STAFF_NOTE = ("Readers grade under their own reader account (an admin adds it on the Home page), signed in as "
              "themselves: nobody grades or changes answers for another reader. Here you create studies and follow "
              "their progress.")


def start_screen(ws: Workspace) -> None:
    """A reader picks a study and joins it (or resumes where they stopped); staff pick or create a study and see
    its progress: they never grade as a reader."""
    reader_id = reader_code()  # None for staff
    password = None
    if reader_id is not None:
        st.subheader("1. Who is reading?")
        # One sign-in is enough: a reader who signed in with their own account's password is not asked again.
        signed_in = signed_in_with_password(ws, reader_id, current_actor())
        if (passwords_configured(ws) or any_formal_study(ws)) and not signed_in:
            password = st.text_input("Reader password", type="password", key="rs_password",
                                     help="Your account signs in without a password (organisation sign-on), so "
                                          "formal studies ask for the reader password an admin set for your code.")
        st.subheader("2. Which study?")
    else:
        st.info(STAFF_NOTE, icon=":material/supervisor_account:")
    picked = pick_test_set(ws, key="rs_test_set")
    if picked is None:
        return
    row, task = picked
    test_set_id = row["id"]
    if test_set_id == demo_test_set_id(ws):
        try:
            ensure_demo_readers(ws, test_set_id, registered_dataset(ws, row), task)
        except InputError as exc:  # the demo folder was removed: the study list still works
            show_error("The demo's simulated readers could not be created.", exc)
    studies = list_studies(ws, test_set_id)
    if state.READER_PENDING_STUDY in st.session_state:  # a study just created becomes the selected one
        st.session_state[state.READER_STUDY] = st.session_state.pop(state.READER_PENDING_STUDY)
    labels = {s["id"]: f"{s['name']} - created {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['created']))} "
                       f"({s['n_readers']} reader(s), {s['n_done']} finished)" for s in studies}
    if allowed(current_actor(), "create_study"):
        labels[NEW_STUDY] = "New study..."
    study_id = st.selectbox("Study", list(labels), format_func=labels.get, key="rs_study")
    staff = allowed(current_actor(), "edit_records")  # staff tidy studies here; readers never see these controls
    if staff:
        show_lifecycle_message()
    if study_id == NEW_STUDY:
        _new_study_form(ws, row, task)
    elif reader_id is None:
        study_progress_view(ws, study_id, key="rs_progress")
    elif st.button("Start or resume reading", key="rs_join", type="primary", icon=":material/play_arrow:"):
        # A reader code belongs to one study per test set: re-entering it resumes that study, whatever is selected.
        joined = reader_study_on(ws, test_set_id, reader_id)
        session = join_or_explain(lambda: join_study(ws, joined or study_id, reader_id, password,
                                                     actor=current_actor()))
        if session is not None:
            enter_session({"study_id": session.study_id, "reader_id": session.reader_id})
            if session.resumed:
                elsewhere = " (in the study you joined before)" if session.study_id != study_id else ""
                st.session_state[state.READER_FLASH] = (f"Welcome back{elsewhere}: {session.answered} of "
                                                        f"{session.total} already graded.")
            st.rerun()
    if staff:  # below the main action: tidying is the rarer task
        if study_id != NEW_STUDY:
            manage_panel(ws, STUDY, next(s for s in studies if s["id"] == study_id), key="rs_manage")
        restore_panel(ws, STUDY, key="rs_restore")


def study_progress_view(ws: Workspace, study_id: str, key: str, title: str = "Progress") -> None:
    """Staff's view of a study: each reader code's status and how many images they graded, never the answers."""
    table = study_progress(ws, study_id, actor=current_actor())
    st.markdown(f"**{plain(title)}**")
    if table.empty:
        st.caption("No reader has joined yet.")
        return
    statuses = {"reading": "reading", "finished": "finished", "ended_early": "ended early"}
    shown = pd.DataFrame({
        "reader": table["reader_id"],
        "status": table["status"].map(statuses).fillna(table["status"]),
        "graded": [f"{a} of {t}" for a, t in zip(table["answered"], table["total"])],
        "joined": [time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in table["joined"]],
        "closed": ["" if pd.isna(t) else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
                   for t in table["finished"]],
    })
    st.caption(f"{len(table)} reader(s) joined, {int((table['status'] != 'reading').sum())} closed their session.")
    st.dataframe(shown, hide_index=True, width="stretch", key=key)


def _new_study_form(ws: Workspace, row: dict, task: Task) -> None:
    n_images = int(row.get("n_images") or 1)
    with st.form("rs_new_study"):
        name = st.text_input("Study name (optional)", key="rs_new_name", max_chars=120)
        size = st.number_input("Images to grade", 1, n_images, min(50, n_images), key="rs_new_size",
                               help="A subset drawn by the seed, stratified by class; the whole set at most.")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="rs_new_seed",
                               help="Fixes the subset and, with each reader's code, their order.")
        formal = st.checkbox("Formal study: only readers with a password (set by an admin on Home) may grade",
                             key="rs_new_formal")
        created = st.form_submit_button("Create study", type="primary")
    if created:
        try:
            study_id = create_study(ws, row["id"], registered_dataset(ws, row), task, subset_size=int(size),
                                    seed=int(seed), name=name.strip(), formal=formal,
                                    actor=current_actor())
        except InputError as exc:
            show_error("The study was not created.", exc)
            return
        st.session_state[state.READER_PENDING_STUDY] = study_id
        st.rerun()


SIGNED_OUT = "you are no longer signed in (signed out elsewhere, or the sign-in expired); sign in again"


def _answer(ws: Workspace, study_id: str, reader_id: str, image_id: str, label: str, confidence_key: str) -> None:
    """Button callback: commit the answer now, then move on to the next image without an answer. It runs before
    the grading fragment and skips the page's sign-in gate, so the sign-in is checked again here (live_actor);
    core.readers.record_answer then checks that this actor may answer as `reader_id`."""
    shown = st.session_state.get(state.READER_SHOWN) or {}
    seconds = time.time() - shown["at"] if shown.get("image_id") == image_id else None
    answer = {"study_id": study_id, "reader_id": reader_id, "image_id": image_id, "label": label,
              "confidence": st.session_state.get(confidence_key), "seconds": seconds}
    actor = live_actor()
    if actor is None:  # nothing stored; the fragment then sends the whole page back to the sign-in form
        st.session_state[state.READER_ERROR] = SIGNED_OUT
        return
    try:
        record_answer(ws, **answer, actor=actor)
    except StorageError as exc:  # kept in the page and retried on every rerun; never acknowledged
        st.session_state[state.READER_UNSAVED] = answer
        st.session_state[state.READER_ERROR] = str(exc)
        return
    except InputError as exc:
        st.session_state[state.READER_ERROR] = str(exc)
        return
    st.session_state[state.READER_POSITION] = None
    st.session_state[state.READER_SAVED] = {"label": label}


def _retry_unsaved(ws: Workspace, study_id: str, reader_id: str) -> None:
    """Store an answer that the workspace could not take before (full disk, read-only folder), or say it is
    still waiting. Until stored, the reader stays on that image."""
    answer = st.session_state.get(state.READER_UNSAVED)
    if not answer or (answer["study_id"], answer["reader_id"]) != (study_id, reader_id):
        return
    try:
        record_answer(ws, **answer, actor=current_actor())
    except StorageError as exc:
        show_error(f"Your answer **{plain(answer['label'])}** for this image is kept in this page but is **not "
                   "saved**: the workspace cannot be written. It is tried again on every click; do not close this "
                   "tab until it is saved.", exc)
        st.button("Try saving again", key="rs_retry_unsaved", icon=":material/refresh:")
        st.session_state.pop(state.READER_ERROR, None)
        return
    except InputError as exc:  # e.g. the reader finished meanwhile: drop it and say so
        st.session_state.pop(state.READER_UNSAVED, None)
        st.session_state[state.READER_ERROR] = str(exc)
        return
    st.session_state.pop(state.READER_UNSAVED, None)
    st.session_state.pop(state.READER_ERROR, None)
    st.session_state[state.READER_POSITION] = None
    st.success(f"Your answer **{plain(answer['label'])}** was saved now.", icon=":material/cloud_done:")


def _go(position: int | None) -> None:
    st.session_state[state.READER_POSITION] = position


@st.fragment
def reading_screen(ws: Workspace, study: Study, reader_id: str) -> None:
    """One image at a time: large, zoomable, the task's classes as buttons (keys 1..k), optional confidence.
    Shows only the image, its place in the reader's order and the reader's own answer: never an id, path,
    label, model output or another reader's answer.

    A fragment: an answer, a zoom, Back or Resume reruns this screen alone (progress, image, buttons), not the page
    around it. Its rerun skips the sign-in gate, so the sign-in is checked again first (signed_in_here); Finish and
    End early rerun the whole page (st.rerun), which then shows the results."""
    signed_in_here()
    _retry_unsaved(ws, study.id, reader_id)
    prog = progress(ws, study.id, reader_id)
    st.progress(prog.fraction, text=f"{prog.answered} of {prog.total} images graded")
    if state.READER_ERROR in st.session_state:
        show_error("That answer was not saved.", InputError(st.session_state.pop(state.READER_ERROR)))
    saved = st.session_state.pop(state.READER_SAVED, None)
    if saved:
        # Feedback for every answer, keyboard or click, the last one too: the reader's own call, never the truth.
        st.toast(f"Saved: {plain(saved['label'])}", icon=":material/check:")
        st.caption(f"Last answer saved: {plain(saved['label'])}")
    position = st.session_state.get(state.READER_POSITION)
    item = item_at(ws, study.id, reader_id, position) if position else next_item(ws, study.id, reader_id)
    if item is None:
        _all_graded(ws, study, reader_id, prog.total)
        return
    shown = st.session_state.get(state.READER_SHOWN) or {}
    if shown.get("image_id") != item.image_id:
        st.session_state[state.READER_SHOWN] = {"image_id": item.image_id, "at": time.time()}
    mine = own_answer(ws, study.id, reader_id, item.image_id)
    left, right = st.columns([3, 1], gap="large")
    with right:
        zoom = st.slider("Zoom", 1.0, 4.0, 1.0, 0.25, key="rs_zoom", format="%.2fx")
        centre_x = st.slider("Zoom centre, left to right (%)", 0, 100, 50, key="rs_centre_x", disabled=zoom == 1.0)
        centre_y = st.slider("Zoom centre, top to bottom (%)", 0, 100, 50, key="rs_centre_y", disabled=zoom == 1.0)
        confidence_key = f"rs_confidence_{study.id}_{item.position}"
        if mine and mine.get("confidence") and confidence_key not in st.session_state:
            st.session_state[confidence_key] = int(mine["confidence"])
        # Buttons, not radio inputs: Streamlit drops un-modified shortcut keys while focus is in an <input>, so
        # after a click on a confidence radio the keys 1-4 did nothing.
        st.segmented_control(f"Confidence (optional; {CONFIDENCE_HELP})", CONFIDENCE_LEVELS, key=confidence_key)
        st.markdown("**Your call**" + (" (keys " + f"1-{len(study.task.classes)})" if len(study.task.classes) <= 9
                                       else ""))
        for index, label in enumerate(study.task.classes):
            chosen = bool(mine) and mine["label"] == label
            # The button shows its shortcut key itself, so the label is the class alone.
            st.button(label, key=f"rs_class_{index}", width="stretch",
                      type="primary" if chosen else "secondary", shortcut=str(index + 1) if index < 9 else None,
                      on_click=_answer, args=(ws, study.id, reader_id, item.image_id, label, confidence_key))
        if mine:
            st.caption("Answered already; choose a class to change your answer.")
        nav = st.columns(2)
        # No icons: in a quarter-width column they cut "Resume" to "Resu...".
        nav[0].button("Back", key="rs_previous", disabled=item.position == 1, on_click=_go,
                      args=(item.position - 1,), width="stretch")
        nav[1].button("Resume", key="rs_next", help="Go to the first image you have not graded yet", on_click=_go,
                      args=(None,), disabled=not position, width="stretch")
        _end_early_controls(ws, study, reader_id)
    with left:
        try:
            image = study_image(ws, study, item.image_id, item.path)
        except InputError:
            st.error(f"{item.caption} could not be opened; skip it with End early or ask the study's organiser.")
            return
        shown_image = zoom_image(image, zoom, centre_x / 100, centre_y / 100)
        st.image(shown_image, caption=item.caption, width="stretch")
        model_output_panel(ws, item.image_id)


def model_output_panel(ws: Workspace, image_id: str) -> None:
    """Under the image: the model's output in the aided session; in the unaided session, a plain reminder."""
    session = st.session_state.get(state.READER_SESSION) or {}
    if "aided_id" not in session:
        return
    if session["phase"] != AIDED:
        st.caption("Unaided session: the model's output is not shown.")
        return
    output = model_output(ws, session["aided_id"], session["base_reader"], image_id)
    table = pd.DataFrame({"class": list(output), "model probability": list(output.values())})
    st.markdown("**Model output** (aided session)")
    st.dataframe(table, hide_index=True, key="rs_aided_output",
                 column_config={"model probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                     format="%.2f")})


def _end_early_controls(ws: Workspace, study: Study, reader_id: str) -> None:
    if not st.session_state.get(state.READER_CONFIRM_END):
        st.button("End early", key="rs_end_early", icon=":material/stop_circle:", width="stretch",
                  on_click=lambda: st.session_state.update({state.READER_CONFIRM_END: True}))
        return
    st.warning("End now? You will be analysed on the images graded so far, and cannot grade more in this study.")
    cols = st.columns(2)
    if cols[0].button("Yes, end now", key="rs_end_confirm", type="primary"):
        end_early(ws, study.id, reader_id, actor=current_actor())
        st.session_state.pop(state.READER_CONFIRM_END, None)
        st.rerun()
    cols[1].button("Keep reading", key="rs_end_cancel", on_click=lambda: st.session_state.pop(state.READER_CONFIRM_END))


def _all_graded(ws: Workspace, study: Study, reader_id: str, total: int) -> None:
    st.success(f"All {total} images graded. Finish to see your results, or go back to review your answers.",
               icon=":material/task_alt:")
    cols = st.columns(2)
    if cols[0].button("Finish and see my results", key="rs_finish", type="primary", icon=":material/flag:"):
        try:
            finish(ws, study.id, reader_id, actor=current_actor())
        except InputError as exc:
            show_error("Could not finish.", exc)
            return
        st.rerun()
    cols[1].button("Review my answers", key="rs_review", on_click=_go, args=(total,), icon=":material/undo:")


def header(study: Study, reader_id: str) -> None:
    """Who is reading what, and a way to hand over to another reader."""
    cols = st.columns([4, 1])
    cols[0].markdown(f"**Reader:** {plain(reader_id)}  \n**Study:** {plain(study.name)}")
    if cols[1].button("Switch reader", key="rs_sign_out", icon=":material/logout:"):
        for key in (state.READER_SESSION, state.READER_POSITION, state.READER_SHOWN, state.READER_CONFIRM_END,
                    "rs_password"):
            st.session_state.pop(key, None)
        st.rerun()
    if state.READER_FLASH in st.session_state:
        st.toast(st.session_state.pop(state.READER_FLASH), icon=":material/history:")
