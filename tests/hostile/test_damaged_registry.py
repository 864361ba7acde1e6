"""A damaged workspace registry (issue 21, item 8): every entry point gives one plain message naming the file and
the backup `doctor --fix` restores, never a traceback; `doctor --fix` moves the damaged file aside (kept) and
restores the newest good backup, saying what it holds and what may have been lost since."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest

from core.errors import DamagedRegistryError, StorageError
from core.store import Workspace
from core.store.backup import list_backups, take_backup
from tests.hostile.corpus import PROJECT_ROOT, cases

REGISTRY = cases("registry")


def _core(root, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "CORE_WORKSPACE": str(root)})


@pytest.fixture
def backed_up(workspace):
    """A workspace with two runs in a backup, a third run made after it, and the WAL folded into the file."""
    first = [workspace.create_run(config={"backbone": "b", "mode": "features"}, name=f"kept {i}") for i in range(2)]
    for i in range(40):  # several pages, so that damage lands inside the tables
        workspace.set_setting(f"note-{i}", "x" * 800)
    backup = take_backup(workspace.db_path)
    later = workspace.create_run(config={"backbone": "b", "mode": "features"}, name="made after the backup")
    with sqlite3.connect(workspace.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return workspace, backup, first, later


@pytest.mark.parametrize("case", REGISTRY, ids=str)
def test_damaged_registry_is_named_with_the_backup_to_restore(case, backed_up):
    workspace, backup, _, _ = backed_up
    case.build(None)(workspace.db_path)
    with pytest.raises(DamagedRegistryError) as caught:
        Workspace.open(workspace.root)
    message = str(caught.value)
    assert isinstance(caught.value, StorageError)
    assert message.startswith(f"the workspace registry {workspace.db_path} is damaged (")
    assert re.search(case.expect, message), message
    assert message.endswith(f"run `python -m core doctor --fix --workspace {workspace.root}` to restore the newest "
                            f"good backup from {backup.when}")


@pytest.mark.parametrize("case", REGISTRY, ids=str)
def test_cli_commands_print_the_message_without_a_traceback(case, backed_up):
    workspace, backup, _, _ = backed_up
    case.build(None)(workspace.db_path)
    runs = _core(workspace.root, "runs", "list")
    assert runs.returncode == 2 and "Traceback" not in runs.stderr, runs.stderr
    assert "is damaged" in runs.stderr and "doctor --fix" in runs.stderr
    doctor = _core(workspace.root, "doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr + doctor.stdout, doctor.stderr
    assert f"the workspace registry {workspace.db_path} is damaged" in doctor.stdout
    assert f"restore the newest good backup from {backup.when}" in doctor.stdout


@pytest.mark.parametrize("case", REGISTRY, ids=str)
def test_doctor_fix_restores_the_newest_good_backup_and_says_what_may_be_lost(case, backed_up):
    workspace, backup, first, later = backed_up
    damaged_bytes = None
    case.build(None)(workspace.db_path)
    damaged_bytes = workspace.db_path.read_bytes()
    fixed = _core(workspace.root, "doctor", "--fix")
    assert "Traceback" not in fixed.stderr + fixed.stdout, fixed.stderr
    out = fixed.stdout
    (aside,) = workspace.root.glob("registry.sqlite.damaged-*[0-9]Z")
    assert aside.read_bytes() == damaged_bytes  # moved aside, never deleted
    assert f"moved the damaged registry aside to {aside} (kept, never deleted)" in out
    assert (f"restored the backup from {backup.when} ({backup.path.name}): it holds 2 runs, 0 datasets and test "
            "sets, 0 reader-study answers") in out
    assert f"anything recorded after {backup.when} may be lost" in out
    assert f"{workspace.runs_dir / later}: a run folder the restored registry does not list" in out
    restored = Workspace.open(workspace.root)
    assert sorted(r["id"] for r in restored.list_runs()) == sorted(first)
    assert _core(workspace.root, "runs", "list").returncode == 0


def test_doctor_fix_skips_a_damaged_backup_for_an_older_good_one(backed_up):
    workspace, good, _, _ = backed_up
    bad = take_backup(workspace.db_path, now=good.taken + 10)
    REGISTRY[0].build(None)(bad.path)  # the newest backup is damaged too
    REGISTRY[0].build(None)(workspace.db_path)
    with pytest.raises(DamagedRegistryError, match=f"restore the newest good backup from {re.escape(good.when)}"):
        Workspace.open(workspace.root)
    fixed = _core(workspace.root, "doctor", "--fix")
    assert f"restored the backup from {good.when} ({good.path.name})" in fixed.stdout, fixed.stdout


def test_a_damaged_registry_is_never_backed_up_over_the_good_ones(backed_up):
    workspace, good, _, _ = backed_up
    REGISTRY[0].build(None)(workspace.db_path)
    assert take_backup(workspace.db_path, now=good.taken + 7200) is None
    assert [b.path for b in list_backups(workspace.db_path)] == [good.path]
    assert not [p for p in workspace.backups_dir.iterdir() if p.name.endswith(".tmp")]
