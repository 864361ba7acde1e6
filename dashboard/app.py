"""Streamlit entry point: sets up the page and routes to the pages in ../pages (it computes nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import sqlite3  # noqa: E402

import streamlit as st  # noqa: E402

from core.errors import STORAGE_ERRNOS, DamagedRegistryError, InputError, StorageError, storage_error  # noqa: E402
from core.store.access import allowed  # noqa: E402
from core.store.workspace import is_storage_failure  # noqa: E402
from dashboard import state  # noqa: E402
from dashboard.access_ui import sign_in_gate, signed_in_sidebar  # noqa: E402
from dashboard.common import (PAGE_ACTIONS, PAGES, READER_PAGE, apply_style, get_workspace, restore_selection,  # noqa: E402
                              workspace_root)
from dashboard.paths_ui import shown_in  # noqa: E402
from dashboard.widgets import show_error  # noqa: E402

# The headline over a problem no page handled itself, by kind (the detail below it is the core's plain message).
_HEADLINES = ((DamagedRegistryError, "The workspace registry is damaged: nothing can be shown until it is restored."),
              (StorageError, "The workspace cannot be used right now."),
              (InputError, "This page could not be shown."))


def main() -> None:
    st.set_page_config(page_title="OpenKermany", page_icon=str(ROOT / "assets" / "logo.svg"), layout="wide")
    apply_style()
    try:
        _route()
    except (InputError, OSError, sqlite3.OperationalError) as exc:
        # Before sign-in too (a damaged or read-only workspace): a plain message, never a traceback. Bugs (any
        # other exception) still reach Streamlit, whose details .streamlit/config.toml hides from users.
        if not isinstance(exc, InputError):
            if (exc.errno not in STORAGE_ERRNOS) if isinstance(exc, OSError) else not is_storage_failure(exc):
                raise
            exc = storage_error(exc, workspace_root(), "storing what this page changed")
        # The server's folders only to an admin: before sign-in nobody is one (the admin's CLI prints them in full).
        detail = shown_in(str(exc), workspace_root(), st.session_state.get(state.ACTOR))
        show_error(next(text for kind, text in _HEADLINES if isinstance(exc, kind)), detail)


def _route() -> None:
    actor = sign_in_gate(get_workspace())  # stops here with the sign-in form until someone is signed in
    staff = allowed(actor, "view_results")
    restore_selection()

    # ?present=1 (a shared presentation link, a kiosk): open presentation mode with no sidebar.
    presenting = st.query_params.get(state.PRESENT_PARAM) == "1"
    sections: dict[str, list] = {}
    pages = {}
    for section, filename, title, icon in PAGES:
        if filename in PAGE_ACTIONS and not allowed(actor, PAGE_ACTIONS[filename]):
            continue
        default = filename == ("present.py" if presenting and staff else "home.py" if staff else READER_PAGE)
        pages[filename] = st.Page(ROOT / "pages" / filename, title=title, icon=icon, default=default)
        sections.setdefault(section, []).append(pages[filename])
    # Readers see only the Reader study page; any other page's URL gets a refusal, never its data.
    page = st.navigation(sections, position="sidebar" if staff and not presenting else "hidden")
    if not staff:
        st.sidebar.page_link(pages[READER_PAGE])
    if not presenting and page is not pages["present.py"]:  # slides: navigation widgets only
        signed_in_sidebar(get_workspace(), actor)
    if staff or page is pages[READER_PAGE]:
        page.run()
    else:
        st.error("Readers grade images only: this page is for researchers and admins.", icon=":material/block:")


# A multiprocessing child started with "spawn" re-imports the parent's entry script as __mp_main__ (after an
# AppTest run in the same process that is this file): it must not run the app.
if __name__ != "__mp_main__":
    main()
