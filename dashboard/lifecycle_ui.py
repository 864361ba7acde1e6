"""Rename, archive, delete or restore runs, test sets and reader studies, with a confirmation; core/store/lifecycle.py
and core/readers/lifecycle.py do the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from core.errors import InputError
from core.store import Workspace
from core.readers import lifecycle as study_lifecycle
from core.readers.study import list_studies
from core.store import lifecycle
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.widgets import plain, show_error



@dataclass(frozen=True)
class Kind:
    noun: str                      # "run", "test set"
    rename: Callable
    archive: Callable
    delete: Callable
    users_note: str                # the clause saying when a record counts as in use
    archived: Callable             # (ws) -> the archived records, newest first
    keeps: str = "keeps its files"  # what archiving keeps


RUN = Kind("run", lifecycle.rename_run, lifecycle.archive_run, lifecycle.delete_run,
           "that predictions, recalibrated runs or reports use",
           lambda ws: [r for r in ws.list_runs(include_archived=True) if r.get("archived")])
TEST_SET = Kind("test set", lifecycle.rename_test_set, lifecycle.archive_test_set, lifecycle.delete_test_set,
                "that predictions, reader studies or reports use",
                lambda ws: [d for d in ws.list_datasets(role="test_set", include_archived=True) if d.get("archived")])
STUDY = Kind("reader study", study_lifecycle.rename_study, study_lifecycle.archive_study,
             study_lifecycle.delete_study, "that a reader has joined, or that is part of an aided study,",
             lambda ws: [s for s in list_studies(ws, include_archived=True) if s.get("archived")],
             keeps="keeps every answer and closes it to readers")


def show_lifecycle_message() -> None:
    if done := st.session_state.pop(state.LIFECYCLE_DONE, None):
        st.success(done, icon=":material/check_circle:")


def manage_panel(ws: Workspace, kind: Kind, record: dict, key: str, *, disabled_reason: str | None = None) -> None:
    """An expander with rename, archive and delete; archive and delete need the confirmation box ticked."""
    with st.expander(f"Rename, archive or delete this {kind.noun}", icon=":material/edit:"):
        if disabled_reason:
            st.info(disabled_reason, icon=":material/info:")
            return
        col_name, col_button = st.columns([3, 1], vertical_alignment="bottom")
        new_name = col_name.text_input("New name", value=record["name"], key=f"{key}_name_{record['id']}")
        if col_button.button("Rename", key=f"{key}_rename_{record['id']}", icon=":material/edit:"):
            _act(lambda: kind.rename(ws, record["id"], new_name, actor=current_actor()),
                 lambda name: f"Renamed to “{plain(name)}”.")
        st.caption(f"Archive hides the {kind.noun} from every list and picker and {kind.keeps}. Delete removes "
                   f"it from the workspace; a {kind.noun} {kind.users_note} is archived instead.")
        confirmed = st.checkbox(f"Yes, archive or delete {kind.noun} “{plain(record['name'])}”",
                                key=f"{key}_confirm_{record['id']}")
        col_archive, col_delete = st.columns(2)
        if col_archive.button("Archive", key=f"{key}_archive_{record['id']}", disabled=not confirmed,
                              icon=":material/archive:"):
            _act(lambda: kind.archive(ws, record["id"], actor=current_actor()), f"Archived the {kind.noun}.")
        if col_delete.button("Delete", key=f"{key}_delete_{record['id']}", disabled=not confirmed,
                             type="primary", icon=":material/delete:"):
            _act(lambda: kind.delete(ws, record["id"], actor=current_actor()), None, kind=kind)


def restore_panel(ws: Workspace, kind: Kind, key: str) -> None:
    """Archived records of one kind, each restorable (shown again in every list); nothing when none is archived."""
    archived = kind.archived(ws)
    if not archived:
        return
    by_id = {r["id"]: r for r in archived}
    with st.expander(f"Archived: {len(archived)} {kind.noun}{'' if len(archived) == 1 else '(s)'}",
                     icon=":material/unarchive:"):
        record_id = st.selectbox(f"Archived {kind.noun}", list(by_id), key=f"{key}_archived",
                                 format_func=lambda i: f"{by_id[i]['name']} ({i})")
        if st.button("Restore", key=f"{key}_restore", icon=":material/unarchive:"):
            _act(lambda: kind.archive(ws, record_id, actor=current_actor(), restore=True),
                 f"Restored the {kind.noun} “{plain(by_id[record_id]['name'])}”.")


def _act(action: Callable, message: str | Callable | None, kind: Kind | None = None) -> None:
    try:
        outcome = action()
    except InputError as exc:
        show_error("Not done.", str(exc))
        return
    if isinstance(outcome, lifecycle.Removal):
        message = (f"Deleted the {kind.noun}{' and its files' if outcome.removed_files else ''}."
                   if outcome.outcome == "deleted" else
                   f"Archived the {kind.noun} instead of deleting it: in use by {len(outcome.users)} record(s) "
                   f"({plain('; '.join(outcome.users[:3]))}{'; ...' if len(outcome.users) > 3 else ''}).")
    st.session_state[state.LIFECYCLE_DONE] = message(outcome) if callable(message) else message
    st.rerun()
