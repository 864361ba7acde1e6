"""Every st.session_state key the dashboard reads or writes outside its own widget call, declared once, and the
typed selection that follows the user across pages. (A key used only as a widget's `key=` belongs to that call.)"""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

# -- the selection that follows the user (also kept in the URL and the workspace: dashboard.common) -------------
RUN_ID = "run_id"
TEST_SET_ID = "test_set_id"
THRESHOLD = "threshold"
SELECTION_KEYS = (RUN_ID, TEST_SET_ID, THRESHOLD)
SELECTION_RESTORED = "_selection_restored"  # the selection was read from the URL / workspace in this session
WORKSPACE_ROOT = "workspace_root"  # chosen on the home page
from core.metrics.threshold_in_use import DEFAULT_THRESHOLD  # noqa: E402  the one owner of the default

# -- evaluation pages ---------------------------------------------------------------------------------------
CONFUSION_CELL = "confusion_cell"  # {run_id, test_set_id, true, called, image_ids}: Performance -> Explain
CELL_APPLIED = "perf_cell_applied"  # the confusion-matrix click already applied to the two cell pickers
CELL_TRUE = "perf_cell_true"  # widget keys the click also sets
CELL_CALLED = "perf_cell_called"
PENALTY_STATE_KEY = "penalty_matrix"  # {task name: rows} edited in this session
PENALTY_NAMES_KEY = "penalty_matrix_name"  # {task name: the matrix's name}
PENALTY_FLASH = "pen_flash"  # a message shown once after a save or delete
REPORT_THRESHOLD = "report_threshold"
PRESENT_SLIDE = "present_slide"  # 0-based slide shown in presentation mode
# Presentation mode's shareable URL: ?present=1&run=RUN&test_set=TEST_SET (dashboard/app.py routes it)
PRESENT_PARAM, PRESENT_RUN_PARAM, PRESENT_TEST_SET_PARAM = "present", "run", "test_set"

# -- explain ------------------------------------------------------------------------------------------------
EXPLAIN_JOB = "explain_job"  # id of this session's background maps job
EXPLAIN_TABLE = "explain_table"  # the gallery table (its row selection)
EXPLAIN_TABLE_APPLIED = "explain_table_applied"  # the row click already applied to the case picker
EXPLAIN_CASE = "explain_case"

# -- reader study -------------------------------------------------------------------------------------------
READER_SESSION = "reader_session"  # {"study_id", "reader_id"}: who reads what in this browser session
READER_POSITION = "rs_position"  # 1-based position being shown; None = the first image without an answer
READER_SHOWN = "rs_shown"  # (study, reader, image shown, when): the seconds an answer took
READER_CONFIRM_END = "rs_confirm_end"
READER_PENDING_STUDY = "rs_pending_study"  # a study just created, selected on the next run
READER_STUDY = "rs_study"
READER_FLASH = "rs_flash"
READER_AIDED_PENDING = "rs_aided_pending"  # an aided-vs-unaided study just created, selected on the next run
READER_AIDED_STUDY = "rs_aided_study"
READER_ERROR = "rs_error"
READER_SAVED = "rs_saved"  # {"label", "position"}: the answer just stored, acknowledged on the next run
READER_UNSAVED = "rs_unsaved"  # an answer the workspace could not store yet (full disk...): retried, never acknowledged

# -- data, training -----------------------------------------------------------------------------------------
TEST_SET_PREVIEW = "testsets_preview"
DATA_ADDED = "_data_added"  # what the add-data form just registered, reported once
TRAIN_DATASET = "train_dataset"
TRAIN_SELECTED_RUN = "train_selected_run"
TRAIN_STARTED = "train_started_message"


def train_test_set_key(run_id: str) -> str:
    """The test set chosen for a run on the Train page."""
    return f"train_test_set_{run_id}"


@dataclass(frozen=True)
class Selection:
    """The run, test set and threshold this session has chosen (None until chosen)."""

    run_id: str | None
    test_set_id: str | None
    threshold: float | None

    @property
    def threshold_or_default(self) -> float:
        """The chosen threshold as a number in [0, 1]; the default when none (or a damaged one) is stored."""
        try:
            value = DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)
        except (TypeError, ValueError):
            return DEFAULT_THRESHOLD
        return min(max(value, 0.0), 1.0) if math.isfinite(value) else DEFAULT_THRESHOLD


def current_selection() -> Selection:
    get = st.session_state.get
    return Selection(get(RUN_ID), get(TEST_SET_ID), get(THRESHOLD))

# -- who is signed in (dashboard/access_ui.py) -------------------------------------------------------------
ACTOR = "actor"  # core.store.access.Actor of the signed-in user; page tests seed it (tests/apptest.py)
SESSION_TOKEN = "session_token"  # this sign-in's token, also in the URL (query param SESSION_PARAM)
SESSION_PARAM = "session"
CLIENT_ID = "sign_in_client"  # random id of this browser session for sign-in throttling when no IP is known
