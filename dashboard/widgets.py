"""Small UI building blocks every page shares: user text made inert, one error display, one sticky selectbox."""

from __future__ import annotations

import re
from typing import Sequence

import streamlit as st

# Characters that can start markup anywhere in st.markdown / st.caption / st.error text (emphasis, code, links
# and images, HTML-like tags, tables, headings, maths, emoji and icon shortcodes, autolinks). List markers (- +)
# only count at the start of a line, and parentheses only right after "]" (a link's target), so only there are
# they escaped: "non-zero" and "(true)" stay readable.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#.!|<>~$:])")
_LIST_MARKER = re.compile(r"(?m)^(\s*)([-+])")


def plain(text) -> str:
    """User text (file, run, class and reader names, problems quoting them) escaped for markdown: shown as typed,
    so a file name can never become a link, an image or formatting."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\\](", "\\]\\(")
    return _LIST_MARKER.sub(r"\1\\\2", escaped)


def show_error(headline: str, detail: Exception | str, container=None) -> None:
    """A clear error: a fixed headline in an error box, then the problem (which may quote user text) as plain
    text, never as markup."""
    box = container or st
    box.error(headline, icon=":material/error:")
    box.code(str(detail), language=None, wrap_lines=True)


def sticky_select(label: str, options: Sequence, key: str, *, default=None, container=None, widget: str = "selectbox",
                  **kwargs):
    """A selectbox (or radio, widget="radio") whose choice follows the user across reruns and pages, and is dropped
    when it is no longer an option (another task's view, another gallery's case): then `default` (or the first
    option) is chosen."""
    options = list(options)
    if st.session_state.get(key) not in options:
        if default in options:
            st.session_state[key] = default
        else:
            st.session_state.pop(key, None)
    return getattr(container or st, widget)(label, options, key=key, **kwargs)
