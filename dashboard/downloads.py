"""Download buttons for every table (CSV) and figure (PNG, SVG via kaleido; interactive HTML)."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.store.csv_safe import csv_bytes


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", name).strip("-").lower() or "download"


def table_download(frame: pd.DataFrame, name: str, key: str | None = None, label: str = "CSV", *,
                   container=None, disabled: bool = False) -> None:
    """The CSV download of a table, built only when clicked; text cells a spreadsheet would run as formulas are
    defused by the one CSV writer (names and reader codes come from users)."""
    (container or st).download_button(label, data=lambda: csv_bytes(frame), file_name=f"{_slug(name)}.csv",
                                      mime="text/csv", key=key or f"csv_{_slug(name)}", icon=":material/download:",
                                      on_click="ignore", disabled=disabled)


def _static_image(fig: go.Figure, fmt: str) -> bytes:
    try:
        return fig.to_image(format=fmt, width=1000, height=700, scale=2 if fmt == "png" else 1)
    except Exception as exc:  # kaleido needs a Chromium; say so in the file rather than crash the page
        raise RuntimeError(f"{fmt.upper()} export needs Chromium for kaleido ({exc})") from exc


def figure_downloads(fig: go.Figure, name: str, key: str | None = None) -> None:
    """PNG / SVG / interactive HTML downloads of a Plotly figure, each rendered only when clicked."""
    key = key or _slug(name)
    cols = st.columns(3)
    cols[0].download_button("PNG", data=lambda: _static_image(fig, "png"), file_name=f"{_slug(name)}.png",
                            mime="image/png", key=f"png_{key}", on_click="ignore", icon=":material/image:")
    cols[1].download_button("SVG", data=lambda: _static_image(fig, "svg"), file_name=f"{_slug(name)}.svg",
                            mime="image/svg+xml", key=f"svg_{key}", on_click="ignore", icon=":material/image:")
    cols[2].download_button("HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode(),
                            file_name=f"{_slug(name)}.html", mime="text/html", key=f"html_{key}",
                            on_click="ignore", icon=":material/code:")
