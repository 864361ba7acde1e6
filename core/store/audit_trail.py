"""The audit trail: who signed in, created, changed, archived or deleted what, and who answered or changed an answer.

One append-only SQLite table in the registry. The app has no function that updates or deletes a row, and triggers
abort any UPDATE or DELETE of the table, so not even a bug (or a hand-typed statement in the app's connection) can
edit it. Core functions record at the point where they call `require(actor, ...)`, so pages only render. Admins
read it (`read_trail`, permission `read_audit`) on the Audit trail page and export it as CSV through the one CSV
writer (core/store/csv_safe.py)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pandas as pd

from core.errors import InputError
from core.store.csv_safe import csv_bytes
from core.store.permissions import require
from core.store.workspace import Workspace

# action -> what it means (the one vocabulary: `record` refuses any other, the page's filter lists these).
ACTIONS: dict[str, str] = {
    "sign_in": "signed in",
    "sign_in_failed": "sign-in refused: unknown name or wrong password",
    "sign_in_locked": "sign-in refused: the name or the client is locked after failed sign-ins",
    "lock": "too many failed sign-ins: a name or a client was locked",
    "unlock": "an admin unlocked a name or a client",
    "user_saved": "user created or changed (role, password)",
    "user_removed": "user removed",
    "reader_password_set": "reader-study password set",
    "reader_password_removed": "reader-study password removed",
    "run_launched": "training run launched",
    "run_cancelled": "training run cancelled",
    "run_derived": "a new run made from another: recalibrated on labelled site images or adapted without labels",
    "model_imported": "a model trained elsewhere (ONNX or TorchScript) registered as a run",
    "predictions_imported": "scores from elsewhere imported as a predictions table (a run without a model)",
    "dataset_registered": "dataset or test set registered from a server folder or a split",
    "dataset_uploaded": "dataset or test set uploaded",
    "renamed": "record renamed",
    "archived": "record archived",
    "restored": "record restored",
    "deleted": "record deleted",
    "study_created": "reader study created",
    "readings_stored": "expert readings stored or imported",
    "reader_joined": "reader joined a study session",
    "answer_stored": "reader answer stored",
    "answer_changed": "reader answer changed",
    "reader_finished": "reader finished or ended a study session early",
}
COLUMNS = ["seq", "time", "user", "role", "action", "target", "detail"]
APPEND_ONLY = "the audit trail is append-only"

_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS audit_trail (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
    "user TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT)",
    "CREATE INDEX IF NOT EXISTS audit_trail_at ON audit_trail (at)",
    f"CREATE TRIGGER IF NOT EXISTS audit_trail_no_update BEFORE UPDATE ON audit_trail "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    f"CREATE TRIGGER IF NOT EXISTS audit_trail_no_delete BEFORE DELETE ON audit_trail "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
)


def ensure_trail(con) -> None:
    """Create the table and its append-only triggers (idempotent) in an open registry connection."""
    for statement in _STATEMENTS:
        con.execute(statement)


def _who(actor) -> tuple[str, str]:
    """(user, role) of an Actor (core.store.permissions), or of a bare name typed on the sign-in form (role '')."""
    if isinstance(actor, str):
        return actor[:200], ""
    return str(actor.user_id), ("shell" if getattr(actor, "shell", False) else str(actor.role))


def record(ws: Workspace, actor, action: str, target: str, detail=None, *, con=None) -> None:
    """Append one row: now, who (an Actor, or the name typed on the sign-in form), the action (one of ACTIONS),
    its target and an optional detail (a dict is stored as JSON). With `con`, in that open transaction, so the
    row is kept exactly when the change it describes is."""
    if action not in ACTIONS:
        raise KeyError(f"unknown audit action {action!r}")
    user, role = _who(actor)
    if isinstance(detail, dict):
        detail = json.dumps(detail, sort_keys=True, default=str)
    row = (time.time(), user, role, action, str(target), None if detail is None else str(detail))
    if con is not None:
        ensure_trail(con)
        con.execute("INSERT INTO audit_trail (at, user, role, action, target, detail) VALUES (?,?,?,?,?,?)", row)
        return
    with ws.connect() as own:
        record(ws, actor, action, target, detail, con=own)


def _epoch(value, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"audit trail filter {name}: not a date or time: {value!r}") from None
    if stamp.tzinfo is None:  # a date typed on the page is local time
        stamp = stamp.tz_localize(datetime.now().astimezone().tzinfo)
    return stamp.timestamp()


def read_trail(ws: Workspace, *, actor, user: str | None = None, action: str | None = None, since=None,
               until=None, contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The trail, newest first, for an actor allowed `read_audit` (admins): seq, time (local, ISO 8601), user,
    role, action, target, detail. Filters: exact user, one action, a time range (epoch seconds, a date or a
    timestamp; `until` exclusive), text in target or detail; `limit` rows at most."""
    require(actor, "read_audit")
    if action and action not in ACTIONS:
        raise InputError(f"audit trail: unknown action {action!r}; one of {', '.join(ACTIONS)}")
    start, end = _epoch(since, "since"), _epoch(until, "until")
    text = f"%{contains}%" if contains else None
    with ws.connect() as con:
        ensure_trail(con)
        rows = con.execute(
            "SELECT seq, at, user, role, action, target, detail FROM audit_trail "
            "WHERE (? IS NULL OR user = ?) AND (? IS NULL OR action = ?) AND (? IS NULL OR at >= ?) "
            "AND (? IS NULL OR at < ?) AND (? IS NULL OR target LIKE ? OR detail LIKE ?) "
            "ORDER BY seq DESC LIMIT ?",
            (user or None, user or None, action or None, action or None, start, start, end, end, text, text, text,
             -1 if limit is None else int(limit))).fetchall()
    frame = pd.DataFrame([dict(r) for r in rows], columns=["seq", "at", *COLUMNS[2:]])
    frame.insert(1, "time", [datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
                             for t in frame["at"]])
    return frame.drop(columns="at")[COLUMNS]


def trail_users(ws: Workspace, *, actor) -> list[str]:
    """Everyone the trail names (for the page's filter), sorted."""
    require(actor, "read_audit")
    with ws.connect() as con:
        ensure_trail(con)
        return [r[0] for r in con.execute("SELECT DISTINCT user FROM audit_trail ORDER BY user")]


def trail_csv(ws: Workspace, *, actor, **filters) -> bytes:
    """The (filtered) trail as spreadsheet-safe CSV bytes, written by the one CSV writer."""
    return csv_bytes(read_trail(ws, actor=actor, **filters))
