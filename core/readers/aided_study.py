"""Aided vs unaided reader study: the same images read first without, then (after a washout) with the model's output.

Two linked blinded studies (core.readers.study) over one image set. Each reader's unaided session is a plain
study that never serves the model's output; the aided session opens only after the unaided one is closed and
the washout has passed, shows the images in a fresh order with the model's output, and never the reader's
earlier answers. Neither session's truth or results are shown until both are closed. The two sessions become
readings of readers "<code> [unaided]" and "<code> [aided]", and an MRMC table (treatments unaided / aided).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pandas as pd

from core.data.tasks import BinaryView, Task, get_task
from core.errors import InputError
from core.readers.blinding import (AIDED, DONE, READING, UNAIDED, WASHOUT, AidedStudy, BlindingError, aided_pair,
                                   ensure_aided_tables, partner_still_open, phase_at, session_code, session_status)
from core.readers.readings import MAX_READER_ID_LENGTH
from core.readers.study import ReaderSession, _images_table, _subset, create_study, get_study, join_study, stable_seed
from core.store import Workspace, new_id
from core.store.access import SHELL, Actor, require, require_own_reading


@dataclass(frozen=True)
class AidedSession:
    """Where a reader stands. `study_id` / `session_code` are what the reading functions of
    core.readers.study take for the current session (None while waiting or when done)."""

    aided_id: str
    reader_id: str
    phase: str                    # unaided, washout, aided or done
    study_id: str | None
    session_code: str | None
    session: ReaderSession | None
    available_at: float | None    # washout: when the aided session opens (epoch seconds)


def create_aided_study(ws: Workspace, test_set_id: str, images, task: str | Task, predictions: pd.DataFrame,
                       subset_size: int | None = None, seed: int = 0, washout_days: float = 28.0,
                       name: str = "", *, actor: Actor = SHELL) -> str:
    """Two linked studies over one image set (seeded subset) plus the model's output for each image."""
    require(actor, "create_study")
    task = get_task(task)
    washout_days = float(washout_days)
    if not washout_days >= 0:
        raise InputError(f"washout must be zero or more days, got {washout_days!r}")
    table = _images_table(images, task)
    size = len(table) if subset_size is None else int(subset_size)
    if not 1 <= size <= len(table):
        raise InputError(f"subset size must be between 1 and {len(table)} (the test set's size), got {subset_size}")
    chosen = _subset(table, size, int(seed))
    columns = [f"prob_{c}" for c in task.classes]
    missing = [c for c in ["image_id", *columns] if c not in predictions.columns]
    if missing:
        raise InputError(f"the model's predictions lack columns {missing}")
    outputs = predictions.assign(image_id=predictions["image_id"].astype(str)).set_index("image_id")
    absent = sorted(set(chosen["image_id"]) - set(outputs.index))
    if absent:
        raise InputError(f"the model has no output for {len(absent)} study image(s), e.g. {absent[:3]}")
    # Only what create_study needs: the truth as `label`, paths where the images have them.
    images_in = chosen[["image_id"]].copy()
    if chosen["path"].notna().all():
        images_in["path"] = chosen["path"]
    if chosen["truth"].notna().all():
        images_in["label"] = chosen["truth"]
    label = name or f"{test_set_id}: {size} images, unaided then aided"
    unaided = create_study(ws, test_set_id, images_in, task, seed=int(seed), name=f"{label} (unaided)", actor=actor)
    # A different seed: the aided session shows the same images in a fresh order.
    aided = create_study(ws, test_set_id, images_in, task, seed=stable_seed("aided", seed) % 2**31,
                         name=f"{label} (aided)", actor=actor)
    aided_id = new_id("aided", name)
    with ws.connect() as con:
        ensure_aided_tables(con)
        con.execute("INSERT INTO aided_studies (id, name, test_set_id, unaided_study_id, aided_study_id, "
                    "washout_days, created) VALUES (?,?,?,?,?,?,?)",
                    (aided_id, label, test_set_id, unaided, aided, washout_days, time.time()))
        con.executemany("INSERT INTO aided_outputs (aided_id, image_id, output) VALUES (?,?,?)",
                        [(aided_id, image, json.dumps({c: float(outputs.loc[image, f"prob_{c}"])
                                                       for c in task.classes}))
                         for image in chosen["image_id"]])
    return aided_id


def get_aided_study(ws: Workspace, aided_id: str) -> AidedStudy:
    with ws.connect() as con:
        ensure_aided_tables(con)
        return aided_pair(con, aided_id)


def list_aided_studies(ws: Workspace, test_set_id: str | None = None) -> list[AidedStudy]:
    with ws.connect() as con:
        ensure_aided_tables(con)
        rows = con.execute("SELECT id FROM aided_studies WHERE (? IS NULL OR test_set_id = ?) ORDER BY created DESC",
                           (test_set_id, test_set_id)).fetchall()
        return [aided_pair(con, r["id"]) for r in rows]


def _check_reader(reader_id: str) -> str:
    reader_id = str(reader_id or "").strip()
    longest = MAX_READER_ID_LENGTH - len(session_code("", UNAIDED))
    if len(reader_id) > longest:
        raise InputError(f"reader code: at most {longest} characters in an aided-vs-unaided study")
    return reader_id


def reader_phase(ws: Workspace, aided_id: str, reader_id: str, now: float | None = None) -> tuple[str, float | None]:
    """(phase, washout end) for a reader, without joining anything."""
    reader_id = _check_reader(reader_id)
    with ws.connect() as con:
        ensure_aided_tables(con)
        return phase_at(con, aided_pair(con, aided_id), reader_id, time.time() if now is None else now)


def join_aided(ws: Workspace, aided_id: str, reader_id: str, password: str | None = None,
               now: float | None = None, *, actor: Actor = SHELL) -> AidedSession:
    """Open (or resume) the session this reader is due for: unaided first; after the washout, aided. Only that
    reader, signed in (`actor`), may."""
    reader_id = _check_reader(reader_id)
    require_own_reading(actor, reader_id)
    now = time.time() if now is None else now
    study = get_aided_study(ws, aided_id)
    phase, opens = reader_phase(ws, aided_id, reader_id, now)
    if phase in (WASHOUT, DONE):
        return AidedSession(aided_id, reader_id, phase, None, None, None, opens)
    study_id = study.unaided_study_id if phase == UNAIDED else study.aided_study_id
    code = session_code(reader_id, phase)
    session = join_study(ws, study_id, code, password, actor=actor)
    return AidedSession(aided_id, reader_id, phase, study_id, code, session, None)


def model_output(ws: Workspace, aided_id: str, reader_id: str, image_id: str, now: float | None = None) -> dict:
    """The model's probabilities for one image, served only inside this reader's open aided session."""
    reader_id = _check_reader(reader_id)
    with ws.connect() as con:
        ensure_aided_tables(con)
        study = aided_pair(con, aided_id)
        phase, _ = phase_at(con, study, reader_id, time.time() if now is None else now)
        if phase != AIDED or session_status(con, study.aided_study_id, session_code(reader_id, AIDED)) is None:
            raise BlindingError(f"reader {reader_id!r}: the model's output is shown only in the aided session")
        row = con.execute("SELECT output FROM aided_outputs WHERE aided_id=? AND image_id=?",
                          (aided_id, str(image_id))).fetchone()
    if row is None:
        raise InputError(f"image {image_id!r} is not in this study")
    return json.loads(row["output"])


def _rating(label: str, confidence, view: BinaryView) -> int:
    """A 10-point rating from a call and its confidence: 1 = certainly negative ... 10 = certainly positive."""
    level = 3 if confidence is None or pd.isna(confidence) else int(confidence)
    return 5 + level if label in view.positive else 6 - level


def aided_mrmc_readings(ws: Workspace, aided_id: str, view: str | BinaryView | None = None) -> pd.DataFrame:
    """reader, treatment (unaided / aided), case, truth (0/1 in the view), rating (1-10 from call and confidence)
    for readers who have closed both sessions; the table `mrmc_analysis` takes."""
    study = get_aided_study(ws, aided_id)
    task = get_study(ws, study.unaided_study_id).task
    chosen = view if isinstance(view, BinaryView) else (task.view(view) if view else task.default_view())
    if chosen is None:
        raise InputError(f"task {task.name!r} has no binary view for an MRMC analysis")
    rows = []
    with ws.connect() as con:
        ensure_aided_tables(con)
        truth = dict(con.execute("SELECT image_id, truth FROM study_items WHERE study_id=? AND truth IS NOT NULL",
                                 (study.unaided_study_id,)).fetchall())
        for treatment, study_id in ((UNAIDED, study.unaided_study_id), (AIDED, study.aided_study_id)):
            for r in con.execute("SELECT a.reader_id, a.image_id, a.label, a.confidence FROM answers a JOIN readers "
                                 "s ON s.study_id = a.study_id AND s.reader_id = a.reader_id WHERE a.study_id=? AND "
                                 "s.status != ?", (study_id, READING)).fetchall():
                reader = r["reader_id"][: -len(f" [{treatment}]")]
                if partner_still_open(con, study_id, r["reader_id"]) or r["image_id"] not in truth:
                    continue
                rows.append({"reader": reader, "treatment": treatment, "case": r["image_id"],
                             "truth": int(truth[r["image_id"]] in chosen.positive),
                             "rating": _rating(r["label"], r["confidence"], chosen)})
    return pd.DataFrame(rows, columns=["reader", "treatment", "case", "truth", "rating"])
