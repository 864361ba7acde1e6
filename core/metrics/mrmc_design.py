"""Check a long MRMC readings table and arrange it by design: crossed, or cases nested in readers / treatments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import InputError

MRMC_COLUMNS = ("reader", "treatment", "case", "truth", "rating")
DESIGNS = ("crossed", "cases_within_readers", "cases_within_treatments")
_DESIGN_WORDS = {
    "crossed": "every reader must rate every case in every treatment",
    "cases_within_readers": "each reader must rate each of their cases in every treatment",
    "cases_within_treatments": "every reader must rate each case of a treatment",
}


@dataclass(frozen=True)
class CaseBlock:
    """Readings that share one set of cases: `rows` index treatment * n_readers + reader."""

    rows: np.ndarray
    truth: np.ndarray
    ratings: np.ndarray
    label: str


@dataclass(frozen=True)
class StudyLayout:
    design: str
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    blocks: tuple[CaseBlock, ...]
    n_cases: int


def _sorted_levels(values: pd.Series) -> list:
    """Distinct values in natural order (numbers numerically), so "2" comes before "10"."""
    levels = pd.unique(values)
    numeric = pd.to_numeric(pd.Series(levels), errors="coerce")
    if numeric.notna().all():
        order = np.argsort(numeric.to_numpy(), kind="stable")
    else:
        order = np.argsort(np.array([str(v) for v in levels]), kind="stable")
    return [levels[i] for i in order]


def _label(value) -> str:
    """A level as the string used in results: 1.0 -> "1"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def check_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """The readings with identifiers as strings, truth 0/1 and numeric ratings; InputError names any problem."""
    if not isinstance(readings, pd.DataFrame):
        raise InputError("MRMC readings must be a table with columns " + ", ".join(MRMC_COLUMNS))
    missing = [c for c in MRMC_COLUMNS if c not in readings.columns]
    if missing:
        raise InputError(f"MRMC readings lack column(s) {', '.join(missing)}; expected {', '.join(MRMC_COLUMNS)}")
    if readings.empty:
        raise InputError("MRMC readings are empty")
    table = readings[list(MRMC_COLUMNS)].copy()
    for column in ("reader", "treatment", "case"):
        blank = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"row {row + 1} of the readings has no {column}")
        table[column] = table[column].map(_label)
    ratings = pd.to_numeric(table["rating"], errors="coerce")
    bad = ~np.isfinite(ratings.to_numpy(dtype=float))
    if bad.any():
        row = table.iloc[int(np.flatnonzero(bad)[0])]
        raise InputError(f"missing or non-numeric rating for reader {row['reader']}, case {row['case']} "
                         f"(treatment {row['treatment']}): {readings['rating'].iloc[int(np.flatnonzero(bad)[0])]!r}")
    table["rating"] = ratings.astype(float)
    truth = pd.to_numeric(table["truth"].replace({True: 1, False: 0}), errors="coerce")
    bad = ~truth.isin([0, 1])
    if bad.any():
        row = table.iloc[int(np.flatnonzero(bad.to_numpy())[0])]
        raise InputError(f"truth must be 0 (non-diseased) or 1 (diseased); case {row['case']} has "
                         f"{readings['truth'].iloc[int(np.flatnonzero(bad.to_numpy())[0])]!r}")
    table["truth"] = truth.astype(int)
    conflicting = table.groupby("case")["truth"].nunique()
    conflicting = conflicting[conflicting > 1]
    if len(conflicting):
        raise InputError(f"case {conflicting.index[0]} has both truth 0 and truth 1 in different rows; "
                         "a case has one true status")
    duplicated = table.duplicated(["reader", "treatment", "case"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise InputError(f"reader {row['reader']} rated case {row['case']} under treatment {row['treatment']} "
                         "more than once; keep one rating per reader, treatment and case")
    return table


def _detect(per_case: pd.DataFrame, n_treatments: int, n_readers: int) -> str:
    if n_readers > 1 and (per_case["readers"] == 1).all():
        return "cases_within_readers"
    if n_treatments > 1 and (per_case["treatments"] == 1).all():
        return "cases_within_treatments"
    return "crossed"


def _first_gap(table: pd.DataFrame, design: str, treatments: list, readers: list) -> str | None:
    """The first missing (reader, treatment, case) reading for the design, in words; None when complete."""
    present = set(zip(table["reader"], table["treatment"], table["case"]))
    for case, rows in table.groupby("case", sort=False):
        if design == "crossed":
            want_readers, want_treatments = readers, treatments
        elif design == "cases_within_readers":
            want_readers, want_treatments = list(pd.unique(rows["reader"])), treatments
            if len(want_readers) > 1:
                return (f"case {case} is rated by readers {', '.join(want_readers[:3])}; with cases nested "
                        "within readers each case belongs to one reader")
        else:
            want_readers, want_treatments = readers, list(pd.unique(rows["treatment"]))
            if len(want_treatments) > 1:
                return (f"case {case} appears under treatments {', '.join(want_treatments[:3])}; with cases "
                        "nested within treatments each case belongs to one treatment")
        for reader in want_readers:
            for treatment in want_treatments:
                if (reader, treatment, case) not in present:
                    return f"reader {reader} has no rating of case {case} under treatment {treatment}"
    return None


def arrange_readings(readings: pd.DataFrame, design: str | None = None) -> StudyLayout:
    """Check the readings and split them into blocks of readings that share their cases."""
    table = check_readings(readings)
    treatments = [_label(v) for v in _sorted_levels(table["treatment"])]
    readers = [_label(v) for v in _sorted_levels(table["reader"])]
    per_case = table.groupby("case").agg(readers=("reader", "nunique"), treatments=("treatment", "nunique"))
    chosen = design or _detect(per_case, len(treatments), len(readers))
    gap = _first_gap(table, chosen, treatments, readers)
    if gap:
        raise InputError(f"missing reading: {gap} ({chosen.replace('_', ' ')} design: {_DESIGN_WORDS[chosen]}); "
                         "no reading is dropped silently")
    r = len(readers)
    t_index = {name: i for i, name in enumerate(treatments)}
    r_index = {name: j for j, name in enumerate(readers)}
    table["row"] = table["treatment"].map(t_index) * r + table["reader"].map(r_index)
    truth_of = table.groupby("case")["truth"].first()
    if chosen == "crossed":
        groups = [("all cases", table)]
    elif chosen == "cases_within_readers":
        groups = [(f"cases read by reader {name}", part) for name, part in table.groupby("reader", sort=False)]
    else:
        groups = [(f"cases of treatment {name}", part) for name, part in table.groupby("treatment", sort=False)]
    blocks = []
    for label, part in groups:
        wide = part.pivot(index="row", columns="case", values="rating").sort_index()
        blocks.append(CaseBlock(rows=wide.index.to_numpy(dtype=int),
                                truth=truth_of.loc[wide.columns].to_numpy() == 1,
                                ratings=wide.to_numpy(dtype=float), label=label))
    return StudyLayout(design=chosen, treatments=tuple(treatments), readers=tuple(readers),
                       blocks=tuple(blocks), n_cases=int(per_case.shape[0]))
