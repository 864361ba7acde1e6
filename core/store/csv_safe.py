"""The one CSV writer for every export: cells a spreadsheet would run as a formula are defused first.

Reader codes, image ids, file names, class names and notes come from users; Excel, LibreOffice and Sheets
run a cell starting with = + - @ (or a tab / carriage return before one) as a formula (OWASP "CSV
injection"). Such text cells, and such column names, get a leading apostrophe, which spreadsheets show
as plain text. Numbers stay numbers, and text that is itself a plain number ("-0.5") is left alone.
Rows end in CRLF (RFC 4180), so that a carriage return inside a cell is quoted: with pandas' default "\n"
it is written bare, and a spreadsheet starts a new row there, whose first cell is then an undefused formula.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def defuse_cell(value):
    """The value as a spreadsheet should show it: text that would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def defused(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of the table with every text cell and column name defused (the index is not exported)."""
    safe = frame.copy()
    safe.columns = [defuse_cell(c) if isinstance(c, str) else c for c in safe.columns]
    for i in range(safe.shape[1]):
        column = safe.iloc[:, i]
        if column.dtype == object or pd.api.types.is_string_dtype(column) \
                or isinstance(column.dtype, pd.CategoricalDtype):
            safe.isetitem(i, column.astype(object).map(defuse_cell))
    return safe


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV bytes of the table (no index), safe to open in a spreadsheet: for downloads."""
    return defused(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as a spreadsheet-safe CSV file (no index): for command-line exports."""
    path = Path(path)
    path.write_bytes(csv_bytes(frame))
    return path
