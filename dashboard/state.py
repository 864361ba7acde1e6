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
PENALTY_STATE_KEY = "penalty_matrix"  # {task name: core.metrics.penalties.Penalty} edited in this session
PENALTY_FLASH = "pen_flash"  # a message shown once after a save or delete
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
LIFECYCLE_DONE = "lifecycle_done"  # the outcome of the last rename/archive/delete, shown once after the rerun


def train_test_set_key(run_id: str) -> str:
    """The test set chosen for a run on the Train page."""
    return f"train_test_set_{run_id}"


# -- keys built from a widget's key (one naming scheme, so no two modules build the same name) -------------------
def companion_key(widget_key: str, what: str) -> str:
    """A value a module keeps beside one of its own widgets between reruns (its last result, a message shown once,
    an uploaded table): `<widget_key>_<what>`."""
    return f"{widget_key}_{what}"


@dataclass(frozen=True)
class OperatingPointKeys:
    """The widget keys of one operating-point picker (dashboard.evaluation_ui.operating_point_ui). Only that module
    writes them; others ask it to move the picker (evaluation_ui.move_operating_point)."""

    rule: str
    threshold: str
    seeded: str  # where the threshold slider opened (the model's point or the default): not a choice of the user's
    target_sensitivity: str
    target_specificity: str


def operating_point_keys(key: str) -> OperatingPointKeys:
    return OperatingPointKeys(f"{key}_rule", f"{key}_threshold", f"{key}_threshold_seeded", f"{key}_target_sens",
                              f"{key}_target_spec")


@dataclass(frozen=True)
class PenaltyEditorKeys:
    """The Penalties page's editors for one task. Each save or preset bumps `version` (a fresh editor opens on the
    matrix in use, penalty_version_key); `base` holds the (name, rows) the matrix editor opened on, `referral_base` the referral costs."""

    base: str
    editor: str
    referral: str
    referral_base: str


def penalty_editor_keys(task_name: str, version: int) -> PenaltyEditorKeys:
    referral = f"pen_referral_{task_name}_{version}"
    return PenaltyEditorKeys(f"pen_base_{task_name}_{version}", f"pen_editor_{task_name}_{version}", referral,
                             companion_key(referral, "base"))


def penalty_version_key(task_name: str) -> str:
    return f"pen_version_{task_name}"


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
SESSION_WORKSPACE = "session_workspace"  # root of the workspace whose users table holds SESSION_TOKEN
SESSION_PARAM = "session"
CLIENT_ID = "sign_in_client"  # random id of this browser session for sign-in throttling when no IP is known
