"""Cleaning up: rename, archive and delete runs and test sets; a record others use is archived, never destroyed.
(Reader studies follow the same rules in core/readers/lifecycle.py.)"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import InputError
from core.store import audit_trail
from core.store.access import SHELL, AccessDenied, Actor, require
from core.store.workspace import Workspace

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Removal:
    """What delete_* did: 'deleted' (row and workspace files gone) or 'archived' (kept, hidden), and why."""

    record_id: str
    outcome: str
    users: tuple[str, ...] = ()
    removed_files: tuple[str, ...] = ()


def check_permission(actor: Actor, action: str, kind: str, record_id: str) -> None:
    """The one place where who may rename / archive / delete is decided: deleting destroys files, so it needs
    the `delete_data` permission (admins); renaming and archiving keep everything (`edit_records`)."""
    try:
        require(actor, "delete_data" if action == "delete" else "edit_records")
    except AccessDenied as exc:
        raise AccessDenied(f"{kind} {record_id}: {exc}") from None


_DONE = {"rename": "renamed", "archive": "archived", "restore": "restored", "delete": "deleted"}


def record_change(ws: Workspace, actor: Actor, action: str, kind: str, record_id: str, detail=None) -> None:
    """Put a rename / archive / restore / delete that was done into the audit trail (after it succeeded)."""
    audit_trail.record(ws, actor, _DONE[action], f"{kind} {record_id}", detail)


def record_removal(ws: Workspace, actor: Actor, kind: str, removal: Removal) -> Removal:
    """A delete as done: 'deleted', or 'archived' (with what uses the record) when it was kept."""
    record_change(ws, actor, "delete" if removal.outcome == "deleted" else "archive", kind, removal.record_id,
                  {"asked": "delete", "users": list(removal.users), "removed_files": list(removal.removed_files)})
    return removal


# -- who uses what -----------------------------------------------------------------------------------
def _reports_naming(ws: Workspace, record_id: str) -> list[str]:
    found = []
    for path in sorted(ws.reports_dir.glob("*.json")):
        try:
            if record_id in path.read_text(errors="replace"):
                found.append(f"report {path.name}")
        except OSError:
            continue
    return found


def users_of_run(ws: Workspace, run_id: str) -> list[str]:
    """Records that use this run: its predictions, runs recalibrated from it, reports naming it."""
    users = [f"predictions on test set {p['dataset_id']}" for p in ws.list_predictions() if p["run_id"] == run_id]
    for run in ws.list_runs(include_archived=True):
        source = (((run.get("config") or {}).get("extra") or {}).get("recalibration") or {}).get("source_run")
        if source == run_id and run["id"] != run_id:
            users.append(f"recalibrated run {run['id']}")
    return users + _reports_naming(ws, run_id)


def users_of_test_set(ws: Workspace, dataset_id: str) -> list[str]:
    """Records that use this test set: predictions on it, reader studies of it, reports naming it."""
    users = [f"predictions of run {p['run_id']}" for p in ws.list_predictions() if p["dataset_id"] == dataset_id]
    with ws.connect() as con:
        try:
            rows = con.execute("SELECT id FROM reader_studies WHERE test_set_id=?", (dataset_id,)).fetchall()
        except sqlite3.OperationalError:  # no reader study was ever created in this workspace
            rows = []
    users += [f"reader study {r['id']}" for r in rows]
    return users + _reports_naming(ws, dataset_id)


# -- runs --------------------------------------------------------------------------------------------
def _run(ws: Workspace, run_id: str) -> dict:
    run = ws.get_run(run_id)
    if run is None:
        raise InputError(f"no run with id {run_id!r} in workspace {ws.root}")
    return run


def _not_active(run: dict, action: str) -> None:
    if run["status"] in ACTIVE:
        raise InputError(f"run {run['name']!r} ({run['id']}) is still {run['status']}; cancel it before you "
                         f"{action} it")


def clean_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise InputError("a new name must not be empty")
    if len(name) > 120:
        raise InputError(f"a name has at most 120 characters, this one has {len(name)}")
    return name


def rename_run(ws: Workspace, run_id: str, name: str, *, actor: Actor = SHELL) -> str:
    run = _run(ws, run_id)
    check_permission(actor, "rename", "run", run_id)
    name = clean_name(name)
    ws.rename("runs", run["id"], name)
    record_change(ws, actor, "rename", "run", run_id, {"from": run["name"], "to": name})
    return name


def archive_run(ws: Workspace, run_id: str, *, actor: Actor = SHELL, restore: bool = False) -> None:
    """Hide a finished run from every list and picker (kept with its files); restore=True shows it again."""
    run = _run(ws, run_id)
    check_permission(actor, "restore" if restore else "archive", "run", run_id)
    _not_active(run, "archive")
    ws.set_archived("runs", run_id, not restore)
    record_change(ws, actor, "restore" if restore else "archive", "run", run_id)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve()) and path.resolve() != folder.resolve()
    except OSError:
        return False


def archive_if_used(record_id: str, users: list[str], archive: Callable[[], None]) -> Removal | None:
    """Archive (not delete) a record that others use; None when nothing uses it."""
    if not users:
        return None
    archive()
    return Removal(record_id, "archived", tuple(users))


def delete_run(ws: Workspace, run_id: str, *, actor: Actor = SHELL) -> Removal:
    """Delete a finished run and its folder; a run that other records use is archived instead."""
    run = _run(ws, run_id)
    check_permission(actor, "delete", "run", run_id)
    _not_active(run, "delete")
    if archived := archive_if_used(run_id, users_of_run(ws, run_id), lambda: ws.set_archived("runs", run_id, True)):
        return record_removal(ws, actor, "run", archived)
    removed = []
    run_dir = Path(run["run_dir"])
    if run_dir.exists() and _inside(run_dir, ws.runs_dir):  # never a folder outside the workspace
        shutil.rmtree(run_dir)
        removed.append(str(run_dir))
    ws.remove_run(run_id)
    return record_removal(ws, actor, "run", Removal(run_id, "deleted", (), tuple(removed)))


# -- test sets ---------------------------------------------------------------------------------------
def _test_set(ws: Workspace, dataset_id: str) -> dict:
    record = ws.get_dataset(dataset_id)
    if record is None or record["role"] != "test_set":
        raise InputError(f"no test set with id {dataset_id!r} in workspace {ws.root}")
    return record


def rename_test_set(ws: Workspace, dataset_id: str, name: str, *, actor: Actor = SHELL) -> str:
    record = _test_set(ws, dataset_id)
    check_permission(actor, "rename", "test_set", dataset_id)
    name = clean_name(name)
    ws.rename("datasets", dataset_id, name)
    record_change(ws, actor, "rename", "test_set", dataset_id, {"from": record["name"], "to": name})
    return name


def archive_test_set(ws: Workspace, dataset_id: str, *, actor: Actor = SHELL, restore: bool = False) -> None:
    _test_set(ws, dataset_id)
    check_permission(actor, "restore" if restore else "archive", "test_set", dataset_id)
    ws.set_archived("datasets", dataset_id, not restore)
    record_change(ws, actor, "restore" if restore else "archive", "test_set", dataset_id)


def delete_test_set(ws: Workspace, dataset_id: str, *, actor: Actor = SHELL) -> Removal:
    """Delete a test set and the copy of its images the workspace holds (an upload); a server folder it was read
    from is never touched. A test set other records use is archived instead."""
    record = _test_set(ws, dataset_id)
    check_permission(actor, "delete", "test_set", dataset_id)
    if archived := archive_if_used(dataset_id, users_of_test_set(ws, dataset_id),
                                   lambda: ws.set_archived("datasets", dataset_id, True)):
        return record_removal(ws, actor, "test_set", archived)
    removed = []
    source = Path(record["source"])
    shared = any(d["id"] != dataset_id and d["source"] == record["source"]
                 for d in ws.list_datasets(include_archived=True))
    if not shared and source.exists() and _inside(source, ws.uploads_dir):
        upload = ws.uploads_dir.resolve() / source.resolve().relative_to(ws.uploads_dir.resolve()).parts[0]
        shutil.rmtree(upload) if upload.is_dir() else upload.unlink()  # the whole upload: file and extraction
        removed.append(str(upload))
    ws.remove_dataset(dataset_id)
    return record_removal(ws, actor, "test_set", Removal(dataset_id, "deleted", (), tuple(removed)))
