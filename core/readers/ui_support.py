"""Look-ups the reader-study page needs that the study API does not answer: which study a reader code is in."""

from __future__ import annotations

from core.readers.schema import ensure_schema
from core.store import Workspace


def reader_study_on(ws: Workspace, test_set_id: str, reader_id: str) -> str | None:
    """The study on this test set that `reader_id` has joined, if any (a reader code takes part in at most one
    study per test set), so that re-entering the code resumes it whichever study the page had selected.
    Says nothing about answers, truth or other readers."""
    with ws.connect() as con:
        ensure_schema(con)
        row = con.execute("SELECT r.study_id FROM readers r JOIN reader_studies s ON s.id = r.study_id "
                          "WHERE s.test_set_id=? AND r.reader_id=? ORDER BY r.joined LIMIT 1",
                          (test_set_id, str(reader_id).strip())).fetchone()
    return None if row is None else row["study_id"]


def open_reading_of(ws: Workspace, reader_id: str) -> str | None:
    """The study (not archived) in which `reader_id` is still reading, the most recently joined if several: a
    signed-in reader who reloads the page goes straight back to it."""
    with ws.connect() as con:
        ensure_schema(con)
        row = con.execute("SELECT r.study_id FROM readers r JOIN reader_studies s ON s.id = r.study_id "
                          "WHERE r.reader_id=? AND r.status='reading' AND s.archived IS NULL "
                          "ORDER BY r.joined DESC LIMIT 1", (str(reader_id).strip(),)).fetchone()
    return None if row is None else row["study_id"]
