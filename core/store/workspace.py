"""The workspace: one folder on disk plus an SQLite registry (WAL) of datasets, runs, predictions and settings."""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core.errors import storage_error
from core.store import backup

DEFAULT_WORKSPACE = "workspace"
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'dataset',      -- 'dataset' (for training) or 'test_set'
    source TEXT NOT NULL,                      -- folder, file or zip it was read from
    task TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    n_images INTEGER NOT NULL,
    created REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    task TEXT NOT NULL,
    dataset_id TEXT,
    backbone TEXT NOT NULL,
    mode TEXT NOT NULL,
    config TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    error TEXT,
    best_metric REAL,
    best_metric_name TEXT,
    device TEXT
);
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    path TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (run_id, dataset_id)
);
CREATE TABLE IF NOT EXISTS penalty_matrices (
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    matrix TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (name, task)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def is_storage_failure(exc: sqlite3.OperationalError) -> bool:
    """True for the OperationalErrors of the storage itself (not of a statement: 'no such table' stays a bug)."""
    text = str(exc).lower()
    return any(s in text for s in ("disk", "full", "readonly", "read-only", "unable to open", "locked", "i/o"))


_SCHEMA_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))
_ARCHIVED_TABLES = ("runs", "datasets")


def _migration_pending(con: sqlite3.Connection) -> bool:
    """True when an existing registry (one with tables) lacks a table of _SCHEMA or a column a migration adds:
    opening it changes its schema, so a backup is taken first. A new, empty registry needs none."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return False
    if set(_SCHEMA_TABLES) - tables:
        return True
    return any("archived" not in {r[1] for r in con.execute(f"PRAGMA table_info({t})")} for t in _ARCHIVED_TABLES)


def _add_archived_columns(con: sqlite3.Connection) -> None:
    """Workspaces made before archiving existed gain the column (NULL = shown; a time = archived then)."""
    for table in _ARCHIVED_TABLES:
        columns = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
        if "archived" not in columns:
            try:
                con.execute(f"ALTER TABLE {table} ADD COLUMN archived REAL")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise
    con.commit()


def new_id(prefix: str, label: str = "") -> str:
    """A readable, unique, filesystem-safe id: prefix-YYYYmmdd-HHMMSS-label-xxxx."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", label).strip("-").lower()[:32]
    parts = [prefix, time.strftime("%Y%m%d-%H%M%S")] + ([slug] if slug else []) + [secrets.token_hex(2)]
    return "-".join(parts)


def _row(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    out = dict(row)
    for key in ("meta", "config"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


@dataclass(frozen=True)
class Workspace:
    """A workspace folder. Every path the product writes lives under `root`."""

    root: Path

    @staticmethod
    def locate(root: str | Path | None = None) -> Path:
        """The workspace folder `open` uses: `root`, $CORE_WORKSPACE, or ./workspace, resolved."""
        return Path(root or os.environ.get("CORE_WORKSPACE") or DEFAULT_WORKSPACE).expanduser().resolve()

    @classmethod
    def open(cls, root: str | Path | None = None) -> "Workspace":
        """Open (creating if needed) the workspace at `root`, $CORE_WORKSPACE, or ./workspace. A registry that is
        not a database or fails SQLite's quick check raises DamagedRegistryError (a StorageError) naming the
        backup `python -m core doctor --fix` restores; a backup is taken before any schema migration and at most
        hourly otherwise (core/store/backup.py)."""
        root = cls.locate(root)
        ws = cls(root)
        action = "opening the workspace"
        try:
            for sub in ws.folders():
                sub.mkdir(parents=True, exist_ok=True)
            problem = backup.registry_problem(ws.db_path)
            if problem:
                raise backup.damaged_error(ws.db_path, problem)
            existed = ws.db_path.is_file() and ws.db_path.stat().st_size > 0
            con = sqlite3.connect(ws.db_path, timeout=30)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                if existed and _migration_pending(con):
                    action = "backing up the registry before upgrading its tables"
                    if backup.take_backup(ws.db_path) is None:
                        raise backup.damaged_error(ws.db_path, "its copy failed SQLite's quick check")
                    action = "upgrading the registry's tables"
                con.executescript(_SCHEMA)  # executescript commits on its own, so outside connect()'s transaction
                _add_archived_columns(con)
            finally:
                con.close()
            if existed:
                backup.maybe_backup(ws.db_path)
            else:
                backup.schedule_from(ws.db_path)
        except (OSError, sqlite3.OperationalError) as exc:
            raise storage_error(exc, root, action) from None
        except sqlite3.DatabaseError as exc:
            if backup.is_damage(exc):
                raise backup.damaged_error(ws.db_path, str(exc)) from None
            raise
        return ws

    # -- folders -------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def backups_dir(self) -> Path:
        """Rolling backups of the registry (core/store/backup.py)."""
        return backup.backups_dir(self.db_path)

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def slots_dir(self) -> Path:
        """The launcher's device-slot lock files (not a run folder)."""
        return self.runs_dir / ".slots"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def demo_dir(self) -> Path:
        return self.datasets_dir / "demo-oct-synthetic"

    def folders(self) -> list[Path]:
        return [self.root, self.datasets_dir, self.uploads_dir, self.runs_dir, self.cache_dir,
                self.predictions_dir, self.reports_dir]

    # -- database ------------------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection: WAL so readers never block the writer, a busy timeout for
        concurrent processes (training runs, several browser sessions), commit on success. A damaged registry
        raises DamagedRegistryError; the hourly backup is taken here when due (before the connection opens)."""
        if backup.backup_due(self.db_path):
            backup.maybe_backup(self.db_path)
        try:
            con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, self.root, "opening the registry") from None
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                if con.in_transaction:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # a failed write may already have ended the transaction
                raise
            else:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            # Full disk, read-only folder, failing storage: nothing was committed; say where and why.
            if isinstance(exc, sqlite3.OperationalError) and is_storage_failure(exc):
                raise storage_error(exc, self.root, "writing to the registry") from None
            if backup.is_damage(exc):  # not a database / a malformed page met while reading or writing
                raise backup.damaged_error(self.db_path, str(exc)) from None
            raise
        finally:
            con.close()

    # -- datasets and test sets ----------------------------------------------------------------
    def register_dataset(self, *, name: str, source: str | Path, task: str, fingerprint: str, n_images: int,
                         role: str = "dataset", meta: dict | None = None, dataset_id: str | None = None) -> str:
        """Record a dataset (or a test set). The same source and fingerprint registered twice keeps one row."""
        if role not in ("dataset", "test_set"):
            raise ValueError(f"role must be 'dataset' or 'test_set', not {role!r}")
        with self.connect() as con:
            existing = con.execute(
                "SELECT id FROM datasets WHERE source=? AND fingerprint=? AND role=? AND task=?",
                (str(source), fingerprint, role, task)).fetchone()
            if existing:
                # Registering an archived one again shows it again (core/store/lifecycle.py archives).
                con.execute("UPDATE datasets SET archived=NULL WHERE id=?", (existing["id"],))
                return existing["id"]
            dataset_id = dataset_id or new_id("ds" if role == "dataset" else "ts", name)
            con.execute(
                "INSERT INTO datasets (id, name, role, source, task, fingerprint, n_images, created, meta) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (dataset_id, name, role, str(source), task, fingerprint, int(n_images), time.time(),
                 json.dumps(meta or {})))
        return dataset_id

    def list_datasets(self, role: str | None = None, include_archived: bool = False) -> list[dict]:
        """Newest first; archived ones (core/store/lifecycle.py) only when asked for."""
        shown = "" if include_archived else " AND archived IS NULL"
        with self.connect() as con:
            if role:
                rows = con.execute(f"SELECT * FROM datasets WHERE role=?{shown} ORDER BY created DESC", (role,))
            else:
                rows = con.execute(f"SELECT * FROM datasets WHERE 1{shown} ORDER BY created DESC")
            return [_row(r) for r in rows.fetchall()]

    def get_dataset(self, dataset_id: str) -> dict | None:
        with self.connect() as con:
            return _row(con.execute("SELECT * FROM datasets WHERE id=?", (dataset_id,)).fetchone())

    def remove_dataset(self, dataset_id: str) -> None:
        with self.connect() as con:
            con.execute("DELETE FROM datasets WHERE id=?", (dataset_id,))

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, *, config: dict, name: str = "", run_id: str | None = None) -> str:
        """Create the run's folder and its registry row in status 'queued'."""
        run_id = run_id or new_id("run", name or f"{config.get('backbone', '')}-{config.get('mode', '')}")
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (id, name, status, task, dataset_id, backbone, mode, config, run_dir, created) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, name or run_id, "queued", str(config.get("task", "")), config.get("dataset_id"),
                 str(config.get("backbone", "")), str(config.get("mode", "")), json.dumps(config),
                 str(run_dir), time.time()))
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "started", "finished", "pid", "error", "best_metric", "best_metric_name", "device",
                   "config", "name", "task", "archived"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update run fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"unknown run status {fields['status']!r}")
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.connect() as con:
            con.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def get_run(self, run_id: str) -> dict | None:
        with self.connect() as con:
            return _row(con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone())

    def list_runs(self, status: str | None = None, include_archived: bool = False) -> list[dict]:
        """Newest first; archived ones (core/store/lifecycle.py) only when asked for."""
        shown = "" if include_archived else " AND archived IS NULL"
        with self.connect() as con:
            if status:
                rows = con.execute(f"SELECT * FROM runs WHERE status=?{shown} ORDER BY created DESC", (status,))
            else:
                rows = con.execute(f"SELECT * FROM runs WHERE 1{shown} ORDER BY created DESC")
            return [_row(r) for r in rows.fetchall()]

    def remove_run(self, run_id: str) -> None:
        with self.connect() as con:
            con.execute("DELETE FROM runs WHERE id=?", (run_id,))

    def set_archived(self, table: str, record_id: str, archived: bool) -> None:
        """Hide ('archived' = now) or show again (NULL) a run, a dataset or a reader study in every list."""
        if table not in ("runs", "datasets", "reader_studies"):
            raise ValueError(f"only runs, datasets and reader studies are archived, not {table!r}")
        with self.connect() as con:
            con.execute(f"UPDATE {table} SET archived=? WHERE id=?", (time.time() if archived else None, record_id))

    def rename(self, table: str, record_id: str, name: str) -> None:
        if table not in ("runs", "datasets", "reader_studies"):
            raise ValueError(f"only runs, datasets and reader studies are renamed here, not {table!r}")
        with self.connect() as con:
            con.execute(f"UPDATE {table} SET name=? WHERE id=?", (name, record_id))

    # -- predictions ---------------------------------------------------------------------------
    def predictions_path(self, run_id: str, dataset_id: str) -> Path:
        return self.predictions_dir / f"{run_id}__{dataset_id}.parquet"

    def record_predictions(self, run_id: str, dataset_id: str, path: str | Path, n_rows: int) -> str:
        pred_id = f"{run_id}__{dataset_id}"
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO predictions (id, run_id, dataset_id, path, n_rows, created) "
                "VALUES (?,?,?,?,?,?)", (pred_id, run_id, dataset_id, str(path), int(n_rows), time.time()))
        return pred_id

    def find_predictions(self, run_id: str, dataset_id: str) -> dict | None:
        with self.connect() as con:
            return _row(con.execute("SELECT * FROM predictions WHERE run_id=? AND dataset_id=?",
                                    (run_id, dataset_id)).fetchone())

    def list_predictions(self) -> list[dict]:
        with self.connect() as con:
            return [_row(r) for r in con.execute("SELECT * FROM predictions ORDER BY created DESC").fetchall()]

    # -- penalty matrices ----------------------------------------------------------------------
    def save_penalty(self, name: str, task: str, matrix: list[list[float]]) -> None:
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO penalty_matrices (name, task, matrix, created) VALUES (?,?,?,?)",
                        (name, task, json.dumps(matrix), time.time()))

    def list_penalties(self, task: str) -> dict[str, list[list[float]]]:
        with self.connect() as con:
            rows = con.execute("SELECT name, matrix FROM penalty_matrices WHERE task=? ORDER BY name", (task,))
            return {r["name"]: json.loads(r["matrix"]) for r in rows.fetchall()}

    def delete_penalty(self, name: str, task: str) -> None:
        with self.connect() as con:
            con.execute("DELETE FROM penalty_matrices WHERE name=? AND task=?", (name, task))

    # -- settings ------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self.connect() as con:
            row = con.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?,?)", (key, json.dumps(value)))
