"""Display text for the report's numbers and the Table record both the HTML file and the page preview show."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from core.metrics.intervals import informative_bounds


@dataclass(frozen=True)
class Table:
    """A table to show: column names, rows of display text, and a note under it. Cells are plain text (the HTML
    renderer escapes them; the page shows them with st.dataframe)."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    first_column_is_header: bool = True
    numeric_columns: list[int] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)  # reasons a cell has no number, cited as [1], [2]...
    show_header: bool = True

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=[c or " " for c in self.columns])

    def footnote_lines(self) -> list[str]:
        return [f"[{i}] {text}" for i, text in enumerate(self.footnotes, 1)]


# -- number formatting (display only) ----------------------------------------------------------------------
def _float(value):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return float(value)  # "inf" / "-inf" as the JSON dict stores infinities
        except ValueError:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def number(value, digits: int = 3) -> str:
    x = _float(value)
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "\u221e" if x > 0 else "-\u221e"
    text = f"{x:,.{digits}f}"
    return text[1:] if text.startswith("-") and float(text.replace(",", "")) == 0 else text


def percent(value, digits: int = 1) -> str:
    x = _float(value)
    if x is None or math.isnan(x) or math.isinf(x):
        return number(value)
    return f"{100 * x:.{digits}f}%"


def fmt(value, kind: str = "number") -> str:
    """A value as the report writes it: proportions as percentages, AUC and others with 3 decimals."""
    return percent(value) if kind == "proportion" else number(value, 3 if kind != "ratio" else 2)


def cite(reason: str, notes: list[str] | None) -> str:
    """' [2]' pointing to the reason in `notes` (added once), or the reason itself when there is no list."""
    if notes is None:
        return f" ({reason})"
    if reason not in notes:
        notes.append(reason)
    return f" [{notes.index(reason) + 1}]"


def interval(entry: dict | None, kind: str = "number", notes: list[str] | None = None) -> str:
    """'91.2% (95% CI 89.0% to 93.1%)'; 'n/a' with its reason (or a footnote number when `notes` collects them)
    where the number or its interval is not defined."""
    if not entry:
        return "n/a"
    value, reason = entry.get("value"), entry.get("reason") or ""
    if _float(value) is None or math.isnan(_float(value)):
        return "n/a" + (cite(reason, notes) if reason else "")
    text = fmt(value, kind)
    low, high = entry.get("low"), entry.get("high")
    if informative_bounds(low, high):
        level = float(entry.get("confidence") or 0.95)
        return text + f" ({level:.0%} CI {fmt(low, kind)} to {fmt(high, kind)})"
    if not reason and _float(low) is not None and _float(high) is not None:
        reason = "the interval has zero width"  # both bounds, one point
    if reason:  # bounds missing without a reason: the value alone (no interval was asked for)
        text += " (no interval" + (cite(reason, notes) + ")" if notes is not None else f": {reason})")
    return text


def flat_interval(row: dict, name: str, kind: str = "proportion", notes: list[str] | None = None) -> str:
    """The same text from a flat row holding name, name_low, name_high (core.readers' tables)."""
    return interval({"value": row.get(name), "low": row.get(f"{name}_low"), "high": row.get(f"{name}_high"),
                     "reason": row.get(f"{name}_reason", ""), "confidence": row.get("confidence", 0.95)}, kind,
                    notes)


def plain_value(value) -> str:
    if value is None or value == "":
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    return str(value)
