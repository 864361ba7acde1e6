"""Rolling backups of the workspace registry, damage detection, and restoring the newest good backup.

Backups are copies made with SQLite's online backup API (a consistent snapshot while other processes keep
writing) into `<workspace>/backups/registry-<UTC time>.sqlite`; the newest `KEEP` are kept. One is taken at most
every `INTERVAL_S`, opportunistically when the workspace is opened or connected to (no daemon), and always before
a schema migration (`core/store/workspace.py`). A copy that fails SQLite's quick check is discarded, so a damaged
registry never pushes the good backups out.

A registry that is not a database or fails `PRAGMA quick_check` (on opening) / `PRAGMA integrity_check` (in
`python -m core doctor`) raises `DamagedRegistryError`, which says which backup `doctor --fix` would restore.
`restore_newest_backup` moves the damaged file aside (never deletes it) and copies the newest backup that passes
the integrity check in its place. The workspace only calls this module.
"""

from __future__ import annotations

import calendar
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import DamagedRegistryError
from core.store.files import write_atomically

BACKUP_DIRNAME = "backups"
KEEP = 10
INTERVAL_S = 3600.0
_STAMP = "%Y%m%dT%H%M%S"
_NAME = re.compile(r"^registry-(\d{8}T\d{6})\.(\d{6})Z\.sqlite$")
# SQLite's result codes for a damaged file (the low byte carries the primary code of an extended one).
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_DAMAGE_TEXT = ("file is not a database", "malformed", "corrupt")
# What a restored backup holds, table by table, to say what may have been lost since.
COUNTED = (("runs", "runs"), ("datasets", "datasets and test sets"), ("answers", "reader-study answers"))

# Per registry file, the time before which no scheduled backup is due (saves listing the folder on every connect).
_next_due: dict[str, float] = {}


@dataclass(frozen=True)
class Backup:
    path: Path
    taken: float  # seconds since the epoch (UTC), from the file name

    @property
    def when(self) -> str:
        return format_time(self.taken)


def format_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def backups_dir(db_path: str | Path) -> Path:
    return Path(db_path).parent / BACKUP_DIRNAME


def _stamp(t: float) -> str:
    return f"{time.strftime(_STAMP, time.gmtime(t))}.{int(round((t % 1) * 1e6)) % 1_000_000:06d}Z"


def list_backups(db_path: str | Path) -> list[Backup]:
    """The registry's backups, newest first."""
    folder = backups_dir(db_path)
    found = []
    for path in folder.glob("registry-*.sqlite") if folder.is_dir() else ():
        match = _NAME.match(path.name)
        if match:
            seconds = calendar.timegm(time.strptime(match.group(1), _STAMP))
            found.append(Backup(path, seconds + int(match.group(2)) / 1e6))
    return sorted(found, key=lambda b: b.taken, reverse=True)


def is_damage(exc: BaseException) -> bool:
    """True for the sqlite3 errors of a damaged file (not a database, malformed image), not of a statement."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _DAMAGE_CODES
    return any(s in str(exc).lower() for s in _DAMAGE_TEXT)


def registry_problem(db_path: str | Path, full: bool = False) -> str | None:
    """What is wrong with the registry file, or None when it passes SQLite's quick check (full=True: the full
    integrity check). A missing or empty file is no problem (a new registry is made). Storage failures (locked,
    unreadable folder) are raised as sqlite3.OperationalError, not reported as damage."""
    path = Path(db_path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    check = "integrity_check" if full else "quick_check"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = [str(r[0]) for r in con.execute(f"PRAGMA {check}").fetchall()]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    if rows == ["ok"]:
        return None
    shown = "; ".join(rows[:3]) + (f"; and {len(rows) - 3} more" if len(rows) > 3 else "")
    return f"{check.replace('_', ' ')}: {shown}"


def newest_good_backup(db_path: str | Path) -> Backup | None:
    """The newest backup that passes SQLite's full integrity check."""
    for candidate in list_backups(db_path):
        try:
            if registry_problem(candidate.path, full=True) is None:
                return candidate
        except sqlite3.Error:
            continue
    return None


def damaged_error(db_path: str | Path, problem: str) -> DamagedRegistryError:
    """The plain message for a damaged registry: what, why, and what `doctor --fix` will do."""
    db_path = Path(db_path)
    command = f"python -m core doctor --fix --workspace {db_path.parent}"
    good = newest_good_backup(db_path)
    if good is not None:
        advice = f"run `{command}` to restore the newest good backup from {good.when}"
    else:
        advice = (f"no good backup of it is in {backups_dir(db_path)}; run `{command}` to move it aside (it is "
                  "kept, never deleted) and start an empty registry: run folders on disk are kept")
    return DamagedRegistryError(f"the workspace registry {db_path} is damaged ({problem}); {advice}",
                                path=db_path)


def take_backup(db_path: str | Path, now: float | None = None) -> Backup | None:
    """Copy the registry (online backup API) to backups/registry-<UTC time>.sqlite and keep the newest KEEP.
    Returns None, keeping no copy, when the registry is missing or the copy fails SQLite's quick check (a
    damaged registry). Storage failures (full disk, read-only folder) are raised as OSError / sqlite3 errors."""
    db_path = Path(db_path)
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return None
    now = time.time() if now is None else now
    target = backups_dir(db_path) / f"registry-{_stamp(now)}.sqlite"
    good = {"ok": False}

    def copy(tmp: str) -> None:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        copy_con = sqlite3.connect(tmp)
        try:
            source.backup(copy_con)
            # A plain rollback-journal file: opening a backup never leaves -wal/-shm files in backups/.
            copy_con.execute("PRAGMA journal_mode=DELETE")
            good["ok"] = copy_con.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
        finally:
            copy_con.close()
            source.close()
        if not good["ok"]:
            raise _Discard

    try:
        write_atomically(target, copy)
    except _Discard:
        return None
    for old in list_backups(db_path)[KEEP:]:
        old.path.unlink(missing_ok=True)
    return Backup(target, now)


class _Discard(Exception):
    """Raised inside the atomic write to drop a copy that failed the check (the temporary file is removed)."""


def backup_due(db_path: str | Path, now: float | None = None) -> bool:
    """Cheap: whether `maybe_backup` may have work to do (no folder listing)."""
    return (time.time() if now is None else now) >= _next_due.get(str(db_path), 0.0)


def maybe_backup(db_path: str | Path, now: float | None = None) -> Backup | None:
    """Take a backup when the newest is older than INTERVAL_S (or there is none). Never fails the caller: a
    backup that cannot be written (full disk, read-only workspace) is skipped and tried again later."""
    now = time.time() if now is None else now
    key = str(db_path)
    if now < _next_due.get(key, 0.0):
        return None
    try:
        newest = list_backups(db_path)
        if newest and now - newest[0].taken < INTERVAL_S:
            _next_due[key] = newest[0].taken + INTERVAL_S
            return None
        taken = take_backup(db_path, now)
    except (OSError, sqlite3.Error):
        taken = None
    _next_due[key] = now + (INTERVAL_S if taken else 60.0)  # a failed one is retried a minute later
    return taken


def schedule_from(db_path: str | Path, now: float | None = None) -> None:
    """A registry made just now: the first scheduled backup is due an interval later (an empty one is not kept)."""
    _next_due[str(db_path)] = (time.time() if now is None else now) + INTERVAL_S


def counts(db_path: str | Path) -> dict[str, int | None]:
    """Rows of each COUNTED table in a registry file (None where the table does not exist there)."""
    out: dict[str, int | None] = {}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, _ in COUNTED:
            out[table] = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if table in tables else None
    finally:
        con.close()
    return out


@dataclass(frozen=True)
class Restored:
    damaged_copy: Path  # where the damaged registry was moved (kept)
    backup: Backup | None  # None: no good backup, an empty registry is started
    counts: dict[str, int | None]

    def lines(self) -> list[str]:
        out = [f"moved the damaged registry aside to {self.damaged_copy} (kept, never deleted)"]
        if self.backup is None:
            out.append("no good backup existed: started an empty registry; every run, test set and answer must be "
                       "registered again (run folders on disk are kept, see the notes)")
            return out
        held = ", ".join(f"{n if n is not None else 0} {label}" for (table, label), n
                         in ((c, self.counts.get(c[0])) for c in COUNTED))
        out.append(f"restored the backup from {self.backup.when} ({self.backup.path.name}): it holds {held}")
        out.append(f"anything recorded after {self.backup.when} may be lost: runs, test sets, settings and "
                   "reader-study answers made since then are not in the restored registry (run folders on disk that "
                   "it does not list are in the notes)")
        return out


def restore_newest_backup(db_path: str | Path, now: float | None = None) -> Restored:
    """Move the damaged registry (and its -wal/-shm files) aside to registry.sqlite.damaged-<UTC time>, then copy
    the newest backup that passes the integrity check in its place (none: the registry starts empty)."""
    db_path = Path(db_path)
    now = time.time() if now is None else now
    good = newest_good_backup(db_path)
    aside = db_path.with_name(f"{db_path.name}.damaged-{_stamp(now)}")
    for suffix in ("-wal", "-shm"):  # a WAL file replayed onto the restored copy would damage it again
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    if db_path.exists():
        os.replace(db_path, aside)
    if good is None:
        return Restored(aside, None, {})

    def copy(tmp: str) -> None:
        source = sqlite3.connect(f"file:{good.path}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

    write_atomically(db_path, copy)
    return Restored(aside, good, counts(db_path))
