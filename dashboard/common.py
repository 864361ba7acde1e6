"""Shared UI plumbing: page list, workspace handle, selection that follows the user, demo bootstrap."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.store import Workspace

ROOT = Path(__file__).resolve().parents[1]

# (section, file in pages/, title, icon). The navigation and the tests both read this list.
PAGES: list[tuple[str, str, str, str]] = [
    ("Overview", "home.py", "Home", ":material/home:"),
]

# Keys of the selection that follows the user across pages and survives a reload (via the workspace).
SELECTION_KEYS = ("run_id", "test_set_id", "threshold")


def apply_style() -> None:
    css = (ROOT / "assets" / "style.css").read_text()
    # Our own static CSS only; never user-supplied text.
    st.html(f"<style>{css}</style>")


@st.cache_resource(show_spinner=False)
def _open_workspace(root: str) -> Workspace:
    return Workspace.open(root)


def workspace_root() -> str:
    return st.session_state.get("workspace_root") or os.environ.get("CORE_WORKSPACE") or str(ROOT / "workspace")


def get_workspace() -> Workspace:
    """The workspace this browser session works in (changeable on the home page)."""
    return _open_workspace(str(Path(workspace_root()).expanduser().resolve()))


def restore_selection() -> None:
    """Fill the session's selection from the URL, else from the workspace's last selection."""
    if st.session_state.get("_selection_restored"):
        return
    ws = get_workspace()
    saved = ws.get_setting("selection", {}) or {}
    params = st.query_params
    for key in SELECTION_KEYS:
        value = params.get(key, saved.get(key))
        if value is not None and key not in st.session_state:
            st.session_state[key] = float(value) if key == "threshold" else value
    st.session_state["_selection_restored"] = True


def remember_selection(**values) -> None:
    """Store the selection in the session, the URL and the workspace (so a reload restores it)."""
    ws = get_workspace()
    saved = ws.get_setting("selection", {}) or {}
    for key, value in values.items():
        if key not in SELECTION_KEYS:
            raise KeyError(key)
        st.session_state[key] = value
        saved[key] = value
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)
    ws.set_setting("selection", saved)


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
