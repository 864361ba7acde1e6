"""Rename, archive or delete one run or test set, with a confirmation; core/store/lifecycle.py does the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from core.errors import InputError
from core.store import Workspace
from core.store import lifecycle
from dashboard.access_ui import current_actor
from dashboard.widgets import plain, show_error

_DONE = "lifecycle_done"  # the outcome of the last action, shown once after the rerun


@dataclass(frozen=True)
class Kind:
    noun: str                      # "run", "test set"
    rename: Callable
    archive: Callable
    delete: Callable
    users_note: str                # what makes a record "used"


RUN = Kind("run", lifecycle.rename_run, lifecycle.archive_run, lifecycle.delete_run,
           "predictions, recalibrated runs or reports")
TEST_SET = Kind("test set", lifecycle.rename_test_set, lifecycle.archive_test_set, lifecycle.delete_test_set,
                "predictions, reader studies or reports")


def show_lifecycle_message() -> None:
    if done := st.session_state.pop(_DONE, None):
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
            _act(lambda: kind.rename(ws, record["id"], new_name, actor=current_actor()), "Renamed to {}.")
        st.caption(f"Archive hides the {kind.noun} from every list and picker and keeps its files. Delete removes "
                   f"it and its files from the workspace; a {kind.noun} that {kind.users_note} use is archived "
                   "instead.")
        confirmed = st.checkbox(f"Yes, archive or delete {kind.noun} “{plain(record['name'])}”",
                                key=f"{key}_confirm_{record['id']}")
        col_archive, col_delete = st.columns(2)
        if col_archive.button("Archive", key=f"{key}_archive_{record['id']}", disabled=not confirmed,
                              icon=":material/archive:"):
            _act(lambda: kind.archive(ws, record["id"], actor=current_actor()), f"Archived the {kind.noun}.")
        if col_delete.button("Delete", key=f"{key}_delete_{record['id']}", disabled=not confirmed,
                             type="primary", icon=":material/delete:"):
            _act(lambda: kind.delete(ws, record["id"], actor=current_actor()), None, kind=kind)


def _act(action: Callable, message: str | None, kind: Kind | None = None) -> None:
    try:
        outcome = action()
    except InputError as exc:
        show_error("Not done.", str(exc))
        return
    if isinstance(outcome, lifecycle.Removal):
        message = (f"Deleted the {kind.noun} and its files." if outcome.outcome == "deleted" else
                   f"Archived the {kind.noun} instead of deleting it: in use by {len(outcome.users)} record(s) "
                   f"({plain('; '.join(outcome.users[:3]))}{'; ...' if len(outcome.users) > 3 else ''}).")
    st.session_state[_DONE] = message.format(f"“{plain(outcome)}”") if "{}" in message else message
    st.rerun()
