"""The readers' own tables in the workspace registry: readings, reader studies, answers, reader passwords."""

from __future__ import annotations

import sqlite3

# Everything the readers package stores. Created with IF NOT EXISTS on each connection that needs it,
# so any workspace (old or new) gains the tables the first time a reader feature touches it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    test_set_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    label TEXT NOT NULL,
    seconds REAL,
    source TEXT NOT NULL,                 -- the imported file's name, 'study:<id>' or 'simulated'
    created REAL NOT NULL,
    PRIMARY KEY (test_set_id, reader_id, image_id)
);
CREATE TABLE IF NOT EXISTS reader_studies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    test_set_id TEXT NOT NULL,
    task TEXT NOT NULL,                   -- the task as JSON (custom tasks are not in the presets)
    subset_size INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    created REAL NOT NULL,
    archived REAL                         -- NULL = shown, a time = archived then (hidden, kept)
);
CREATE TABLE IF NOT EXISTS study_items (
    study_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    path TEXT,
    truth TEXT,                           -- never selected by anything a reader is served while reading
    PRIMARY KEY (study_id, image_id)
);
CREATE TABLE IF NOT EXISTS readers (
    study_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    status TEXT NOT NULL,                 -- 'reading', 'finished' or 'ended_early'
    item_order TEXT NOT NULL,             -- JSON list of image ids in this reader's seeded order
    joined REAL NOT NULL,
    finished REAL,
    PRIMARY KEY (study_id, reader_id)
);
CREATE TABLE IF NOT EXISTS answers (
    study_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence INTEGER,
    seconds REAL,
    answered REAL NOT NULL,
    changes INTEGER NOT NULL DEFAULT 0,   -- how many times the reader changed this answer
    PRIMARY KEY (study_id, reader_id, image_id)
);
CREATE TABLE IF NOT EXISTS reader_passwords (
    reader_id TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    n INTEGER NOT NULL,
    r INTEGER NOT NULL,
    p INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


def ensure_schema(con: sqlite3.Connection) -> None:
    """Create the readers' tables if missing (cheap when they exist). Run inside `ws.connect()`."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)
    if "archived" not in {r[1] for r in con.execute("PRAGMA table_info(reader_studies)")}:
        try:  # a workspace made before studies could be archived
            con.execute("ALTER TABLE reader_studies ADD COLUMN archived REAL")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it first
                raise
