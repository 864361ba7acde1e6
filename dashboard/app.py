"""Streamlit entry point: sets up the page and routes to the pages in ../pages (it computes nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.common import PAGES, apply_style, restore_selection  # noqa: E402

st.set_page_config(page_title="OpenKermany", page_icon=str(ROOT / "assets" / "logo.svg"), layout="wide")
apply_style()
restore_selection()

from dashboard import state  # noqa: E402

# ?present=1 (a shared presentation link, a kiosk): open presentation mode with no sidebar.
presenting = st.query_params.get(state.PRESENT_PARAM) == "1"
sections: dict[str, list] = {}
for section, filename, title, icon in PAGES:
    default = filename == ("present.py" if presenting else "home.py")
    sections.setdefault(section, []).append(st.Page(ROOT / "pages" / filename, title=title, icon=icon,
                                                    default=default))
st.navigation(sections, position="hidden" if presenting else "sidebar").run()
