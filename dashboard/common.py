"""Shared UI plumbing: page list, workspace handle, selection that follows the user, demo bootstrap."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from core.errors import InputError
from core.store import Workspace
from core.store.selection import save_selection, saved_selection

if TYPE_CHECKING:
    import pandas as pd

    from core.data.tasks import Task
from dashboard import state
from dashboard.widgets import show_error

ROOT = Path(__file__).resolve().parents[1]

# (section, file in pages/, title, icon). The navigation and the tests both read this list.
PAGES: list[tuple[str, str, str, str]] = [
    ("Overview", "home.py", "Home", ":material/home:"),
    ("Overview", "audit_trail.py", "Audit trail", ":material/history:"),  # admins only (read_audit)
    ("Model", "train.py", "Train", ":material/model_training:"),
    ("Model", "test_sets.py", "Test sets", ":material/folder_open:"),
    ("Evaluate", "performance.py", "Performance", ":material/monitoring:"),
    ("Evaluate", "penalties.py", "Penalties", ":material/balance:"),
    ("Evaluate", "compare.py", "Compare runs", ":material/compare_arrows:"),
    ("Experts", "experts.py", "Experts vs model", ":material/groups:"),
    ("Experts", "reader_study.py", "Reader study", ":material/visibility:"),
    ("Explain", "explain.py", "Explain", ":material/image_search:"),
    ("Explain", "report.py", "Report", ":material/description:"),
    ("Explain", "present.py", "Present", ":material/co_present:"),
]
READER_PAGE = "reader_study.py"  # the one page a reader (role in core/store/access.py) may open
# Pages listed only for those core allows the action (core.store.permissions.PERMISSIONS); the page refuses others too.
PAGE_ACTIONS = {"audit_trail.py": "read_audit"}



def apply_style() -> None:
    css = (ROOT / "assets" / "style.css").read_text()
    # Our own static CSS only; never user-supplied text.
    st.html(f"<style>{css}</style>")


@st.cache_resource(show_spinner=False)
def _open_workspace(root: str) -> Workspace:
    from core.store.doctor import clean_leftovers

    ws = Workspace.open(root)
    try:  # once per server process and workspace: half-written files of killed processes go
        clean_leftovers(ws)
    except OSError:
        pass  # a read-only workspace: pages say so when they write
    return ws


def workspace_root() -> str:
    return st.session_state.get(state.WORKSPACE_ROOT) or os.environ.get("CORE_WORKSPACE") or str(ROOT / "workspace")


def workspace_at(root: str) -> Workspace:
    """The workspace at `root`, opened once per server process (the one handle every session shares)."""
    return _open_workspace(str(Path(root).expanduser().resolve()))


def get_workspace() -> Workspace:
    """The workspace this browser session works in (changeable on the home page)."""
    return workspace_at(workspace_root())


def _selection_owner() -> str | None:
    """Whose saved selection this session reads and writes: the signed-in user's (core.store.selection)."""
    actor = st.session_state.get(state.ACTOR)
    return None if actor is None else actor.user_id


def restore_selection() -> None:
    """Fill the session's selection from the URL, else from the signed-in user's last selection."""
    if st.session_state.get(state.SELECTION_RESTORED):
        return
    ws, owner = get_workspace(), _selection_owner()
    saved = saved_selection(ws, owner) if owner is not None else {}
    params = st.query_params
    for key in state.SELECTION_KEYS:
        value = params.get(key, saved.get(key))
        if value is not None and key not in st.session_state:
            st.session_state[key] = float(value) if key == state.THRESHOLD else value
    st.session_state[state.SELECTION_RESTORED] = True


def remember_selection(**values) -> None:
    """Store the selection in the session, the URL and the signed-in user's saved selection in the workspace (so
    their reload restores it; core.store.selection writes only what changed, and no other user's)."""
    for key, value in values.items():
        if key not in state.SELECTION_KEYS:
            raise KeyError(key)
        st.session_state[key] = value
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)
    owner = _selection_owner()
    if owner is not None:
        save_selection(get_workspace(), owner, values)


def ensure_demo_ui(ws: Workspace) -> dict:
    """Generate and register the built-in demo if missing, with a progress bar."""
    from core.data.demo import demo_status, ensure_demo

    status = demo_status(ws)
    if status["registered"]:
        return status
    bar = st.progress(0.0, text="Generating the built-in synthetic OCT demo (first launch only)...")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"Generating synthetic OCT B-scans: {done}/{total}")

    try:
        status = ensure_demo(ws, progress=progress)
    finally:
        bar.empty()
    return status


@dataclass(frozen=True)
class PredictionsFile:
    """A predictions parquet at one version: the cache key of everything computed from it (a rewritten file has
    a new modification time, so it is read again)."""

    path: str
    mtime: float

    @classmethod
    def at(cls, path: str | Path) -> "PredictionsFile":
        return cls(str(path), Path(path).stat().st_mtime)


@st.cache_data(show_spinner=False, max_entries=16)
def _read_predictions(file: PredictionsFile):
    from core.infer.predictions import read_predictions

    return read_predictions(file.path)


def load_predictions(file: PredictionsFile | str | Path):
    """(DataFrame, meta) of a predictions parquet, cached until the file changes. Treat the frame as read-only."""
    return _read_predictions(file if isinstance(file, PredictionsFile) else PredictionsFile.at(file))


@st.cache_resource(show_spinner="Opening the test set's images...", max_entries=8)
def _registered_dataset(root: str, dataset_id: str, fingerprint: str):
    from core.data.ingest import load_registered

    # fingerprint in the key: re-registered content is never served from an old entry.
    return load_registered(Workspace.open(root), dataset_id)


def registered_dataset(ws: Workspace, record: dict):
    """A registered dataset or test set as it was registered (its task, skip-bad setting and split), loaded once per
    content and shared by every page: the one loader of test-set images. Treat it as read-only."""
    return _registered_dataset(str(ws.root), record["id"], str(record.get("fingerprint")))


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumbnail(root: str, dataset_id: str, fingerprint: str, image_id: str, side: int):
    import numpy as np

    image = _registered_dataset(root, dataset_id, fingerprint).image_by_id(image_id)
    image.thumbnail((side, side))
    return np.asarray(image.convert("RGB"))


def thumbnail(ws: Workspace, record: dict, image_id: str, side: int):
    """A registered image shrunk to fit `side` pixels (RGB array), cached; InputError when it cannot be read."""
    return _thumbnail(str(ws.root), record["id"], str(record.get("fingerprint")), str(image_id), int(side))


def reader_in_study(ws: Workspace) -> bool:
    """True while this browser session belongs to a reader who has not finished their study (blinding)."""
    session = st.session_state.get(state.READER_SESSION)
    if not session:
        return False
    from core.readers import progress

    try:
        return not progress(ws, session["study_id"], session["reader_id"]).done
    except Exception:  # study gone (other workspace): nothing to protect
        return False


@dataclass(frozen=True, eq=False)
class EvaluationSelection:
    """The run x test set chosen on an evaluation page: the predictions table (read-only), its metadata and task,
    and the run's and test set's registry rows."""

    run_id: str
    dataset_id: str
    file: PredictionsFile
    frame: "pd.DataFrame"
    meta: dict
    task: "Task"
    run: dict | None
    test_set: dict | None

    @property
    def path(self) -> str:
        return self.file.path


def _when(created) -> str:
    return time.strftime("%d %b %H:%M", time.localtime(float(created))) if created else "?"


def run_choice_label(run: dict) -> str:
    """How a run is named in every picker: two runs with one name differ by their start time and id's end."""
    return f"{run['name']} ({run['backbone']}, {run['mode']}, {_when(run.get('created'))}, ...{run['id'][-4:]})"


def test_set_choice_label(record: dict) -> str:
    """How a test set is named in every picker (the same name twice differs by size, date and id's end)."""
    return (f"{record['name']} ({record['n_images']:,} images, {_when(record.get('created'))}, "
            f"...{record['id'][-4:]})")


def offered_predictions(ws: Workspace) -> tuple[list[dict], dict[str, dict], dict[str, dict]]:
    """The predictions rows a picker offers, and every run and test set by id (archived ones included, for
    names). Archived runs and test sets (core/store/lifecycle.py) are kept for the records that use them, not
    offered."""
    runs = {r["id"]: r for r in ws.list_runs(include_archived=True)}
    test_sets = {d["id"]: d for d in ws.list_datasets(include_archived=True)}
    rows = [r for r in ws.list_predictions() if not (runs.get(r["run_id"], {}).get("archived")
                                                   or test_sets.get(r["dataset_id"], {}).get("archived"))]
    return rows, runs, test_sets


def select_evaluation(ws: Workspace, key: str = "eval") -> EvaluationSelection | None:
    """Pick a run x test set that has predictions; the choice follows the user across pages.
    Returns the choice with its predictions, or None (having said why)."""
    from core.infer.predictions import task_of

    if reader_in_study(ws):
        st.warning("You are taking part in a reader study that you have not finished. Model outputs and other "
                   "readers' results stay hidden until you finish (or end early) on the **Reader study** page.",
                   icon=":material/visibility_off:")
        return None
    rows = ws.list_predictions()
    if not rows:
        st.info("No predictions yet. Train a model on the **Train** page, then run it on a test set on the "
                "**Test sets** page.", icon=":material/info:")
        return None
    rows, runs, test_sets = offered_predictions(ws)
    if not rows:
        st.info("Every run or test set with predictions is archived: restore one with `python -m core runs "
                "restore RUN_ID`, or run a model on a test set on the **Test sets** page.", icon=":material/info:")
        return None
    run_ids = sorted({r["run_id"] for r in rows}, key=lambda rid: -(runs.get(rid, {}).get("created") or 0))

    def run_label(rid: str) -> str:
        run = runs.get(rid)
        return run_choice_label(run) if run else rid

    current_run = st.session_state.get(state.RUN_ID)
    col_run, col_test = st.columns(2)
    run_id = col_run.selectbox("Model (training run)", run_ids, format_func=run_label, key=f"{key}_run",
                               index=run_ids.index(current_run) if current_run in run_ids else 0)
    test_ids = [r["dataset_id"] for r in rows if r["run_id"] == run_id]
    current_test = st.session_state.get(state.TEST_SET_ID)
    test_set_id = col_test.selectbox(
        "Test set", test_ids, key=f"{key}_test",
        format_func=lambda tid: test_set_choice_label(test_sets[tid]) if tid in test_sets else tid,
        index=test_ids.index(current_test) if current_test in test_ids else 0)
    if (run_id, test_set_id) != (current_run, current_test):
        remember_selection(run_id=run_id, test_set_id=test_set_id)
    row = next(r for r in rows if r["run_id"] == run_id and r["dataset_id"] == test_set_id)
    try:
        file = PredictionsFile.at(row["path"])
        frame, meta = load_predictions(file)
    except (InputError, OSError) as exc:  # damaged or missing file: say which and how to recover; other pairs stay
        show_error("The predictions of this model on this test set cannot be used. Compute them again on the "
                   "**Test sets** page (the damaged file is then replaced).", exc)
        return None
    task = task_of(meta, (runs.get(run_id) or {}).get("task"))
    return EvaluationSelection(run_id=run_id, dataset_id=test_set_id, file=file, frame=frame, meta=meta, task=task,
                               run=runs.get(run_id), test_set=test_sets.get(test_set_id))
