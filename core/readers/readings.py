"""Expert readings: import from CSV (long or wide), validate everything at once, store and list per test set."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import IO, Iterable

import pandas as pd

from core.data.tasks import Task, get_task
from core.errors import InputError
from core.readers.schema import ensure_schema
from core.store import Workspace, audit_trail
from core.store.access import (MAX_READER_ID_LENGTH, SHELL, SIMULATED_PREFIX, Actor, clean_reader_code,  # noqa: F401
                               require)

READINGS_COLUMNS = ["reader_id", "image_id", "label", "seconds"]
REQUIRED_READING_COLUMNS = tuple(READINGS_COLUMNS[:3])  # seconds is optional
MAX_LISTED_PROBLEMS = 10
# Wide files must not carry the truth next to the readers' columns: a column named like this is
# almost surely not a reader, and silently treating it as one would put the truth among the readers.
_NOT_READER_COLUMNS = {"label", "truth", "true_label", "diagnosis", "patient_id", "path", "split", "seconds"}


def is_simulated(reader_id: str) -> bool:
    """Simulated (demo) readers carry a fixed prefix so that every view can label them as such."""
    return str(reader_id).startswith(SIMULATED_PREFIX)


def _source_name(source) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    if isinstance(source, pd.DataFrame):
        return "readings table"
    return Path(str(getattr(source, "name", "") or "uploaded readings")).name


def _read_table(source, name: str) -> tuple[pd.DataFrame, bool]:
    """The raw table as strings, and whether rows map to file lines (header = line 1)."""
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        frame.columns = [str(c) for c in frame.columns]
        return frame.astype(object).where(frame.notna(), ""), False
    try:
        if isinstance(source, (str, Path)):
            frame = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            raw = source.read()
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8-sig")
            frame = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{name}: not a UTF-8 text CSV file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{name}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{name}: not a readable CSV file ({exc})") from None
    return frame, True


def _normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    lower = {c: c.lower() for c in frame.columns}
    known = set(READINGS_COLUMNS)
    return frame.rename(columns={c: low for c, low in lower.items() if low in known})


def _to_long(frame: pd.DataFrame, name: str, file_lines: bool) -> pd.DataFrame:
    """Long format as is; wide format (image_id + one column per reader) melted. Adds a `where` column."""
    frame = _normalise_columns(frame)
    cols = set(frame.columns)
    row_where = [f"line {i + 2}" if file_lines else f"row {i + 1}" for i in range(len(frame))]
    if set(REQUIRED_READING_COLUMNS) <= cols:
        out = frame[list(REQUIRED_READING_COLUMNS)].astype(str).copy()
        out["seconds"] = frame["seconds"].astype(str) if "seconds" in cols else ""
        out["where"] = row_where
        return out
    if "image_id" not in cols:
        raise InputError(f"{name}: needs columns reader_id,image_id,label (long format) or image_id plus one "
                         f"column per reader (wide format); found {list(frame.columns)}")
    if "reader_id" in cols or "label" in cols:
        missing = [c for c in ("reader_id", "label") if c not in cols]
        raise InputError(f"{name}: long format needs reader_id, image_id and label; missing {missing}")
    readers = [c for c in frame.columns if c != "image_id"]
    suspicious = [c for c in readers if c.lower() in _NOT_READER_COLUMNS]
    if suspicious:
        raise InputError(f"{name}: wide format takes image_id plus one column per reader only; column(s) "
                         f"{suspicious} do not look like readers (remove them)")
    if not readers:
        raise InputError(f"{name}: wide format needs at least one reader column next to image_id")
    pieces = []
    for reader in readers:
        part = pd.DataFrame({"reader_id": reader, "image_id": frame["image_id"].astype(str),
                             "label": frame[reader].astype(str), "seconds": "",
                             "where": [f"{w}, column {reader!r}" for w in row_where]})
        # An empty cell in wide format means "this reader did not grade this image".
        pieces.append(part[part["label"].str.strip() != ""])
    return pd.concat(pieces, ignore_index=True)


def _problem_list(problems: list[str]) -> str:
    shown = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(shown)
    text = "\n".join(f"  - {p}" for p in shown)
    return text + (f"\n  ... and {more} more" if more > 0 else "")


def load_readings(source: str | Path | IO | pd.DataFrame, task: str | Task,
                  known_image_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate expert readings.

    Long format: `reader_id,image_id,label[,seconds]`; wide format: `image_id` plus one column per reader
    (an empty cell = not graded). Labels are canonicalised through the task. Every problem (unknown image
    ids, unknown labels, duplicate (reader, image) pairs, bad seconds) is collected and raised in one
    InputError naming the file and the lines; nothing is returned half-valid. Readers who graded only
    part of the set are allowed (see `reading_coverage`).
    """
    task = get_task(task)
    name = _source_name(source)
    frame, file_lines = _read_table(source, name)
    long = _to_long(frame, name, file_lines)
    if long.empty:
        raise InputError(f"{name}: no readings found")
    known = None if known_image_ids is None else {str(i) for i in known_image_ids}
    problems: list[str] = []
    readers, images, labels, seconds = [], [], [], []
    for row in long.itertuples(index=False):
        reader, image = row.reader_id.strip(), row.image_id.strip()
        if not reader:
            problems.append(f"{row.where}: empty reader_id")
        elif len(reader) > MAX_READER_ID_LENGTH:
            problems.append(f"{row.where}: reader_id longer than {MAX_READER_ID_LENGTH} characters")
        else:
            try:  # the reserved simulated-reader prefix, and any other rule of a reader code
                clean_reader_code(reader)
            except InputError as exc:
                problems.append(f"{row.where}: {exc}")
        if not image:
            problems.append(f"{row.where}: empty image_id")
        elif known is not None and image not in known:
            problems.append(f"{row.where}: unknown image id {image!r} (not in the test set)")
        label = ""
        try:
            label = task.canonical_label(row.label)
        except InputError:
            problems.append(f"{row.where}: unknown label {row.label.strip()!r}; expected one of "
                            f"{list(task.classes)}")
        secs = math.nan
        if row.seconds.strip():
            try:
                secs = float(row.seconds)
            except ValueError:
                secs = -1.0
            if not math.isfinite(secs) or secs < 0:
                problems.append(f"{row.where}: seconds must be a non-negative number, got {row.seconds.strip()!r}")
        readers.append(reader)
        images.append(image)
        labels.append(label)
        seconds.append(secs)
    out = pd.DataFrame({"reader_id": readers, "image_id": images, "label": labels,
                        "seconds": pd.Series(seconds, dtype=float)})
    dup = out.duplicated(["reader_id", "image_id"], keep=False) & (out["reader_id"] != "") & (out["image_id"] != "")
    for (reader, image), group in out[dup].groupby(["reader_id", "image_id"], sort=False):
        where = ", ".join(long.loc[group.index, "where"])
        problems.append(f"{where}: reader {reader!r} graded image {image!r} more than once")
    if problems:
        raise InputError(f"{name}: {len(problems)} problem(s) in the readings, nothing was imported:\n"
                         + _problem_list(problems))
    return out.reset_index(drop=True)


def reading_coverage(readings: pd.DataFrame, image_ids: Iterable[str]) -> pd.DataFrame:
    """Per reader: how many of the set's images they graded. Partial readers are analysed on the cases
    they graded; `statement` says so in words for the page."""
    in_set = {str(i) for i in image_ids}
    rows = []
    for reader, group in readings.groupby("reader_id", sort=True):
        graded = int(group["image_id"].astype(str).isin(in_set).sum())
        partial = graded < len(in_set)
        statement = (f"{reader} graded {graded} of {len(in_set)} images (partial: analysed on the cases graded)"
                     if partial else f"{reader} graded all {len(in_set)} images")
        rows.append({"reader_id": reader, "n_graded": graded, "n_in_set": len(in_set),
                     "coverage": graded / len(in_set) if in_set else math.nan, "partial": partial,
                     "simulated": is_simulated(reader), "statement": statement})
    return pd.DataFrame(rows, columns=["reader_id", "n_graded", "n_in_set", "coverage", "partial", "simulated",
                                       "statement"])


def _check_frame(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_READING_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"readings table is missing column(s) {missing}; use load_readings() to read a file")
    df = df.copy()
    if "seconds" not in df.columns:
        df["seconds"] = math.nan
    if df.duplicated(["reader_id", "image_id"]).any():
        raise InputError("readings table has duplicate (reader, image) pairs; use load_readings() to validate")
    if df.empty:
        raise InputError("readings table is empty")
    return df


def store_readings(ws: Workspace, test_set_id: str, df: pd.DataFrame, source_name: str, *,
                   replace: bool = False, actor: Actor = SHELL) -> int:
    """Store validated readings for a test set in one transaction; returns the number of rows written.

    Readers who already have readings for this test set are rejected (InputError naming them) unless
    `replace=True`, which swaps their old readings for the new ones. Readers taking part in an in-app
    study on this test set are always rejected: their readings come from the study.
    """
    require(actor, "replace_readings")
    df = _check_frame(df)
    new_readers = sorted(df["reader_id"].astype(str).unique())
    now = time.time()
    with ws.connect() as con:
        ensure_schema(con)
        marks = ",".join("?" * len(new_readers))
        in_study = [r["reader_id"] for r in con.execute(
            f"SELECT DISTINCT r.reader_id FROM readers r JOIN reader_studies s ON s.id = r.study_id "
            f"WHERE s.test_set_id=? AND r.reader_id IN ({marks}) ORDER BY r.reader_id",
            (test_set_id, *new_readers))]
        if in_study:
            raise InputError(f"{source_name}: reader(s) {in_study} take part in an in-app reader study on this "
                             f"test set; use other reader codes. Nothing was imported.")
        existing = [r["reader_id"] for r in con.execute(
            f"SELECT DISTINCT reader_id FROM readings WHERE test_set_id=? AND reader_id IN ({marks}) "
            f"ORDER BY reader_id", (test_set_id, *new_readers))]
        if existing and not replace:
            raise InputError(f"{source_name}: reader(s) {existing} already have readings for this test set; "
                             f"choose 'replace' to replace them. Nothing was imported.")
        if existing:
            con.execute(f"DELETE FROM readings WHERE test_set_id=? AND reader_id IN ({marks})",
                        (test_set_id, *new_readers))
        con.executemany(
            "INSERT INTO readings (test_set_id, reader_id, image_id, label, seconds, source, created) "
            "VALUES (?,?,?,?,?,?,?)",
            [(test_set_id, str(r.reader_id), str(r.image_id), str(r.label),
              None if pd.isna(r.seconds) else float(r.seconds), source_name, now)
             for r in df.itertuples(index=False)])
        audit_trail.record(ws, actor, "readings_stored", f"test_set {test_set_id}",
                           {"source": source_name, "rows": int(len(df)), "readers": new_readers,
                            "replaced": existing}, con=con)
    return len(df)


def list_readings(ws: Workspace, test_set_id: str, *, include_simulated: bool = True) -> pd.DataFrame:
    """All readings stored for a test set: reader_id, image_id, label, seconds, source."""
    with ws.connect() as con:
        ensure_schema(con)
        rows = con.execute("SELECT reader_id, image_id, label, seconds, source FROM readings "
                           "WHERE test_set_id=? ORDER BY reader_id, image_id", (test_set_id,)).fetchall()
    out = pd.DataFrame([dict(r) for r in rows], columns=READINGS_COLUMNS + ["source"])
    out["seconds"] = out["seconds"].astype(float)
    if not include_simulated:
        out = out[~out["reader_id"].map(is_simulated)].reset_index(drop=True)
    return out


def readings_stamp(ws: Workspace, test_set_id: str) -> tuple[int, float | None]:
    """(rows, newest row's `created`) of a test set's readings: changes whenever they do, so it keys a cache of
    anything computed from them without reading them. Rows are only ever inserted (stamped now) or deleted: an
    insert raises the newest time, a delete alone lowers the count, and rows older than the newest are never
    added again, so two different sets of readings never share a stamp."""
    with ws.connect() as con:
        ensure_schema(con)
        row = con.execute("SELECT COUNT(*), MAX(created) FROM readings WHERE test_set_id=?", (test_set_id,)).fetchone()
    return int(row[0]), (None if row[1] is None else float(row[1]))


def delete_readings(ws: Workspace, test_set_id: str, reader_id: str) -> int:
    """Remove one reader's readings for a test set; returns how many rows went."""
    with ws.connect() as con:
        ensure_schema(con)
        cur = con.execute("DELETE FROM readings WHERE test_set_id=? AND reader_id=?", (test_set_id, reader_id))
        return cur.rowcount
