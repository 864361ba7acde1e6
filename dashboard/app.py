"""Streamlit entry point: sets up the page and routes to the pages in ../pages (it computes nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from core.store.access import allowed  # noqa: E402
from dashboard import state  # noqa: E402
from dashboard.access_ui import sign_in_gate, signed_in_sidebar  # noqa: E402
from dashboard.common import PAGES, READER_PAGE, apply_style, get_workspace, restore_selection  # noqa: E402


def main() -> None:
    st.set_page_config(page_title="OpenKermany", page_icon=str(ROOT / "assets" / "logo.svg"), layout="wide")
    apply_style()
    actor = sign_in_gate(get_workspace())  # stops here with the sign-in form until someone is signed in
    staff = allowed(actor, "view_results")
    restore_selection()

    # ?present=1 (a shared presentation link, a kiosk): open presentation mode with no sidebar.
    presenting = st.query_params.get(state.PRESENT_PARAM) == "1"
    sections: dict[str, list] = {}
    pages = {}
    for section, filename, title, icon in PAGES:
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
