"""Blinding shared by the plain reader study and the aided-vs-unaided pair built on it: the session statuses,
BlindingError, and the pair's rules core.readers.study checks (which reader a session code belongs to, whether a join
is allowed, whether the partner session is still open). Both study modules build on this one, never on each other."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.errors import InputError
from core.readers.schema import ensure_schema

READING, FINISHED, ENDED_EARLY = "reading", "finished", "ended_early"


class BlindingError(PermissionError):
    """Refused: the truth, the model's output and other readers' answers stay hidden until the reader
    has finished (or ended early)."""


UNAIDED, AIDED = "unaided", "aided"
WASHOUT, DONE = "washout", "done"
DAY = 86_400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aided_studies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    test_set_id TEXT NOT NULL,
    unaided_study_id TEXT NOT NULL,
    aided_study_id TEXT NOT NULL,
    washout_days REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS aided_outputs (
    aided_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    output TEXT NOT NULL,                 -- the model's probabilities as JSON {class: p}
    PRIMARY KEY (aided_id, image_id)
);
"""


def ensure_aided_tables(con) -> None:
    ensure_schema(con)
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)


@dataclass(frozen=True)
class AidedStudy:
    id: str
    name: str
    test_set_id: str
    unaided_study_id: str
    aided_study_id: str
    washout_days: float


def session_code(reader_id: str, treatment: str) -> str:
    """The reader code under which one session's answers are stored (and become readings)."""
    return f"{reader_id} [{treatment}]"


def aided_pair(con, aided_id: str) -> AidedStudy:
    row = con.execute("SELECT * FROM aided_studies WHERE id=?", (aided_id,)).fetchone()
    if row is None:
        raise InputError(f"aided-vs-unaided study {aided_id!r} does not exist")
    return AidedStudy(row["id"], row["name"], row["test_set_id"], row["unaided_study_id"], row["aided_study_id"],
                      row["washout_days"])


def session_status(con, study_id: str, code: str):
    return con.execute("SELECT status, finished FROM readers WHERE study_id=? AND reader_id=?",
                       (study_id, code)).fetchone()


def phase_at(con, study: AidedStudy, reader_id: str, now: float) -> tuple[str, float | None]:
    first = session_status(con, study.unaided_study_id, session_code(reader_id, UNAIDED))
    if first is None or first["status"] == READING:
        return UNAIDED, None
    second = session_status(con, study.aided_study_id, session_code(reader_id, AIDED))
    if second is not None:
        return (AIDED if second["status"] == READING else DONE), None
    opens = float(first["finished"]) + study.washout_days * DAY
    return (WASHOUT, opens) if now < opens else (AIDED, None)


def check_join(con, study_id: str, code: str, now: float | None = None) -> None:
    """Called by core.readers.study.join_study: a session of an aided-vs-unaided pair is joined through
    join_aided only (the right session code, and the aided one only after the unaided one and the washout)."""
    ensure_aided_tables(con)
    row = con.execute("SELECT id FROM aided_studies WHERE unaided_study_id=? OR aided_study_id=?",
                      (study_id, study_id)).fetchone()
    if row is None:
        return
    study = aided_pair(con, row["id"])
    treatment = UNAIDED if study_id == study.unaided_study_id else AIDED
    suffix = f" [{treatment}]"
    if not code.endswith(suffix):
        raise InputError(f"study {study_id!r} is the {treatment} session of the aided-vs-unaided study "
                         f"{study.name!r}; join that study instead")
    if treatment == AIDED:
        phase, opens = phase_at(con, study, code[: -len(suffix)], time.time() if now is None else now)
        if phase == UNAIDED:
            raise BlindingError("the aided session opens after the unaided session is closed")
        if phase == WASHOUT:
            raise BlindingError(f"the aided session opens after the washout, at {time.ctime(opens)}")


def session_owner(con, study_id: str, code: str) -> str:
    """The reader a session code belongs to: "<code> [unaided]" in the unaided session of an aided-vs-unaided
    study (and "<code> [aided]" in its aided one) is reader <code>; any other code is its own reader."""
    ensure_aided_tables(con)
    row = con.execute("SELECT unaided_study_id, aided_study_id FROM aided_studies "
                      "WHERE unaided_study_id=? OR aided_study_id=?", (study_id, study_id)).fetchone()
    if row is None:
        return str(code).strip()
    suffix = f" [{UNAIDED if study_id == row['unaided_study_id'] else AIDED}]"
    code = str(code).strip()
    return code[: -len(suffix)] if code.endswith(suffix) else code


def partner_still_open(con, study_id: str, code: str) -> bool:
    """True when `study_id` is one session of an aided-vs-unaided pair and this reader's other session is not
    closed yet (or, after the unaided one, not even started): then this session's answers, truth and results
    stay hidden, so nothing from one session reaches the other (core.readers.study calls this)."""
    ensure_aided_tables(con)
    row = con.execute("SELECT * FROM aided_studies WHERE unaided_study_id=? OR aided_study_id=?",
                      (study_id, study_id)).fetchone()
    if row is None:
        return False
    for treatment, other_study in ((UNAIDED, row["aided_study_id"]), (AIDED, row["unaided_study_id"])):
        suffix = f" [{treatment}]"
        mine = row["unaided_study_id"] if treatment == UNAIDED else row["aided_study_id"]
        if mine == study_id and code.endswith(suffix):
            other_code = session_code(code[: -len(suffix)], AIDED if treatment == UNAIDED else UNAIDED)
            other = session_status(con, other_study, other_code)
            return other is None or other["status"] == READING
    return False
