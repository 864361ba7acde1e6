"""Import MRMC reader-study readings (long CSV: reader, treatment, case, truth, rating), every problem listed."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from core.errors import InputError
from core.metrics.mrmc_design import MRMC_COLUMNS, arrange_readings
from core.readers.readings import _problem_list, _read_table, _source_name

# Other names people give the same columns (matched case-insensitively).
_ALIASES = {
    "reader": ("reader", "reader_id", "observer"),
    "treatment": ("treatment", "modality", "condition", "test"),
    "case": ("case", "case_id", "image_id", "patient"),
    "truth": ("truth", "disease", "diseased", "status"),
    "rating": ("rating", "score", "confidence"),
}


def _rename(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    mapping, missing = {}, []
    for column, aliases in _ALIASES.items():
        found = [lower[a] for a in aliases if a in lower]
        if not found:
            missing.append(column)
        else:
            mapping[found[0]] = column
    if missing:
        raise InputError(f"{name}: MRMC readings need columns {', '.join(MRMC_COLUMNS)}; missing "
                         f"{', '.join(missing)} (found {', '.join(map(str, frame.columns))})")
    return frame[list(mapping)].rename(columns=mapping)


def load_mrmc_readings(source: str | Path | IO | pd.DataFrame, design: str | None = None) -> pd.DataFrame:
    """Read and check long-format MRMC readings; returns columns reader, treatment, case, truth, rating.

    Every row-level problem (blank identifiers, truth other than 0/1, ratings that are not numbers,
    repeated readings, a case with two truths) is listed in one InputError naming the file and lines;
    then the study design is checked, so a missing reading is named by reader, treatment and case.
    """
    name = _source_name(source)
    raw, file_lines = _read_table(source, name)
    if raw.empty:
        raise InputError(f"{name}: no readings found")
    frame = _rename(raw, name).astype(str).apply(lambda col: col.str.strip())
    where = [f"line {i + 2}" if file_lines else f"row {i + 1}" for i in range(len(frame))]
    problems: list[str] = []
    for column in ("reader", "treatment", "case"):
        for i in np.flatnonzero((frame[column] == "").to_numpy()):
            problems.append(f"{where[i]}: empty {column}")
    truth = frame["truth"].str.lower().map({"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1})
    for i in np.flatnonzero(truth.isna().to_numpy()):
        problems.append(f"{where[i]}: truth must be 0 or 1, got {frame['truth'].iloc[i]!r}")
    rating = pd.to_numeric(frame["rating"], errors="coerce")
    for i in np.flatnonzero(~np.isfinite(rating.to_numpy(dtype=float))):
        problems.append(f"{where[i]}: rating of reader {frame['reader'].iloc[i]}, case {frame['case'].iloc[i]} "
                        f"is not a number ({frame['rating'].iloc[i]!r})")
    repeated = frame.duplicated(["reader", "treatment", "case"], keep="first").to_numpy()
    for i in np.flatnonzero(repeated):
        problems.append(f"{where[i]}: reader {frame['reader'].iloc[i]} already rated case {frame['case'].iloc[i]} "
                        f"under treatment {frame['treatment'].iloc[i]}")
    if not truth.isna().any():
        conflicting = frame.assign(truth=truth).groupby("case")["truth"].nunique()
        for case in conflicting[conflicting > 1].index:
            problems.append(f"case {case}: truth is 0 in some rows and 1 in others")
    if problems:
        raise InputError(f"{name}: {len(problems)} problem(s) in the MRMC readings:\n{_problem_list(problems)}")
    table = pd.DataFrame({"reader": frame["reader"], "treatment": frame["treatment"], "case": frame["case"],
                          "truth": truth.astype(int), "rating": rating.astype(float)})
    try:
        arrange_readings(table, design)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    return table
