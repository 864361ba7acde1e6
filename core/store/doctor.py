"""Workspace health: leftovers of dead processes removed, the registry checked against the files it names.

A process killed mid-write leaves a `.NAME.partial-PID-*` extraction folder or a `.NAME.PID.*.tmp` file (both
carry the writer's pid); those whose process is gone are removed at startup and by `python -m core doctor`.
The registry is checked with SQLite's integrity check, for rows naming files that are gone, and for files of the
workspace that no row names (orphans: reported; removed with fix=True). A damaged registry is moved aside and the
newest good backup restored with fix=True (core/store/backup.py), saying what may have been lost since; orphans are
then only reported, never removed (they may belong to records made after the backup).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.store import backup
from core.store.processes import process_alive
from core.store.workspace import Workspace


# Leftovers written before names carried a pid are removed once this old.
LEGACY_LEFTOVER_AGE_S = 3600
_PARTIAL = re.compile(r"^\..+\.partial-(?:(\d+)-)?[^/]*$")
# Leftovers sit at most this deep (uploads/upload-X/.data.partial-*, runs/RUN/checkpoint/.f.tmp, cache/explain/ab/).
_LEFTOVER_DEPTH = 3
_TMP = re.compile(r"^\..+?\.(?:(\d+)\.)?(?:[A-Za-z0-9_]+\.)?tmp$")


@dataclass
class Checkup:
    """What doctor found: leftovers removed, registry problems, orphan files (and whether they were removed)."""

    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # still there (fix=False, or too young to remove)
    fixed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, never removed (run folders)

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.orphans


def _writer_gone(path: Path, pid: str | None, now: float) -> bool:
    if pid is not None:
        return not process_alive(int(pid))
    try:
        return now - path.stat().st_mtime > LEGACY_LEFTOVER_AGE_S
    except OSError:
        return False


def clean_leftovers(ws: Workspace) -> list[str]:
    """Remove half-written extraction folders and temporary files of processes that are no longer running."""
    removed, now = [], time.time()
    base_depth = len(ws.root.parts)
    for dirpath, dirnames, filenames in os.walk(ws.root):
        if len(Path(dirpath).parts) - base_depth >= _LEFTOVER_DEPTH:
            dirnames[:] = []  # extracted datasets below are data, not leftovers: the walk stays cheap
        for name in list(dirnames):
            match = _PARTIAL.match(name)
            if match and _writer_gone(Path(dirpath) / name, match.group(1), now):
                shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
                removed.append(str(Path(dirpath) / name))
                dirnames.remove(name)
        for name in filenames:
            match = _TMP.match(name)
            if match and _writer_gone(Path(dirpath) / name, match.group(1), now):
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed.append(str(Path(dirpath) / name))
    return removed


def _integrity(ws: Workspace) -> tuple[str | None, bool]:
    """(problem, damaged): the damaged-registry message (full integrity check) and True, a registry that cannot
    be checked (locked, unreadable: not damage) and False, or (None, False) when the registry is sound."""
    try:
        problem = backup.registry_problem(ws.db_path, full=True)
    except sqlite3.Error as exc:
        return f"registry {ws.db_path}: cannot be checked ({exc})", False
    return (str(backup.damaged_error(ws.db_path, problem)), True) if problem else (None, False)


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) or r.is_relative_to(path) for r in roots)


def check_workspace(ws: Workspace, fix: bool = False) -> Checkup:
    """Clean leftovers, check the registry and its files; fix=True also removes registry rows of predictions
    whose file is gone and orphan files (predictions tables and uploads no row names), and restores the newest
    good backup of a damaged registry (then orphans are only reported). `ws` need not be opened."""
    report = Checkup(removed=clean_leftovers(ws))
    problem, damaged = _integrity(ws)
    restored = None
    if problem:
        if not (fix and damaged):
            report.problems.append(problem)
            return report  # a damaged registry: nothing below can be trusted
        restored = backup.restore_newest_backup(ws.db_path)
        report.fixed += restored.lines()
        ws = Workspace.open(ws.root)  # the restored (or new) registry gets this version's tables
    datasets, runs = ws.list_datasets(include_archived=True), ws.list_runs(include_archived=True)
    predictions = ws.list_predictions()
    for row in datasets:
        if not Path(row["source"]).exists():
            report.problems.append(f"dataset {row['id']} ({row['name']}): its files are gone ({row['source']})")
    for row in runs:
        if not Path(row["run_dir"]).is_dir():
            report.problems.append(f"run {row['id']} ({row['name']}): its folder is gone ({row['run_dir']})")
    for row in predictions:
        if not Path(row["path"]).is_file():
            if fix:
                with ws.connect() as con:
                    con.execute("DELETE FROM predictions WHERE id=?", (row["id"],))
                report.fixed.append(f"removed the registry row of missing predictions {row['path']}")
            else:
                report.problems.append(f"predictions of run {row['run_id']} on {row['dataset_id']}: "
                                       f"the file is gone ({row['path']})")
    named = {Path(r["path"]).resolve() for r in predictions}
    orphans = [p for p in sorted(ws.predictions_dir.glob("*.parquet")) if p.resolve() not in named]
    sources = [Path(r["source"]).resolve() for r in datasets]
    orphans += [p for p in sorted(ws.uploads_dir.glob("upload-*")) if not _under(p.resolve(), sources)]
    registered_runs = {Path(r["run_dir"]).resolve() for r in runs}
    run_orphans = [p for p in sorted(ws.runs_dir.iterdir())
                   if p.is_dir() and p.resolve() not in registered_runs and p != ws.slots_dir]
    now = time.time()
    for path in orphans:
        # An upload younger than an hour may still be being written by a live server: never removed then.
        if not fix or restored or (path.is_dir() and now - path.stat().st_mtime < LEGACY_LEFTOVER_AGE_S):
            report.orphans.append(str(path))
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        report.fixed.append(f"removed orphan {path}")
    unlisted = ("a run folder the restored registry does not list: made after the backup? (kept)" if restored
                else "a run folder the registry does not list (kept)")
    report.notes += [f"{p}: {unlisted}" for p in run_orphans]
    return report
