"""Files the product writes: atomic writes (write beside the target and rename, so a crash never leaves a
half-written file in place) and CSV exports that a spreadsheet cannot run as formulas."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd


def write_atomically(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temporary file in the target's folder, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

# A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_csv(table: pd.DataFrame) -> bytes:
    """CSV bytes (UTF-8) for download; text cells that a spreadsheet would run as a formula get a leading
    apostrophe, since reader codes and sources come from users."""
    safe = table.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return safe.to_csv(index=False).encode("utf-8")
