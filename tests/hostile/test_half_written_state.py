"""Half-written state: leftovers of killed processes are removed at startup and by `python -m core doctor`,
which also checks the registry against its files (issue 14, item 8)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from core.store.doctor import LEGACY_LEFTOVER_AGE_S, check_workspace, clean_leftovers
from tests.hostile.corpus import PROJECT_ROOT, cases


def _doctor(root, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "doctor", "--workspace", str(root), *extra],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", cases("half-written"), ids=str)
def test_extraction_killed_with_sigkill_leaves_a_folder_that_doctor_removes(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    target = workspace.uploads_dir / "upload-x" / "data"
    target.parent.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", "import sys; from core.data.archive import extract_zip; "
                              "extract_zip(sys.argv[1], sys.argv[2])", str(zip_path), str(target)], cwd=PROJECT_ROOT)
    partial = []
    deadline = time.monotonic() + 60
    while not partial and time.monotonic() < deadline and child.poll() is None:
        partial = [p for p in target.parent.iterdir() if ".partial-" in p.name]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert partial and partial[0].is_dir(), "the extraction finished before it could be killed"
    assert f".partial-{child.pid}-" in partial[0].name  # the writer's pid is in the name
    done = _doctor(workspace.root)
    assert str(partial[0]) in done.stdout and "removed leftovers of dead processes: 1" in done.stdout, done.stdout
    assert not partial[0].exists()


def test_leftovers_of_live_processes_stay_and_old_nameless_ones_go(workspace):
    live = workspace.predictions_dir / f".p.parquet.{os.getpid()}.abcd1234.tmp"
    live.write_bytes(b"being written")
    legacy = workspace.uploads_dir / ".data.partial-k2j3h4"
    legacy.mkdir()
    fresh = workspace.uploads_dir / ".other.partial-zz9"
    fresh.mkdir()
    old = time.time() - LEGACY_LEFTOVER_AGE_S - 10
    os.utime(legacy, (old, old))
    assert clean_leftovers(workspace) == [str(legacy)]
    assert live.exists() and fresh.exists() and not legacy.exists()


def test_startup_removes_leftovers_of_dead_processes(tmp_path, monkeypatch):
    from core.store import Workspace
    from tests.apptest import open_page

    ws = Workspace.open(tmp_path / "ws")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = ws.cache_dir / f".features.safetensors.{int(dead.stdout)}.q1w2e3r4.tmp"
    leftover.write_bytes(b"half")
    monkeypatch.setenv("CORE_WORKSPACE", str(ws.root))
    open_page("../pages/compare.py")  # any page: the app opens the workspace first (compare makes no demo)
    assert not leftover.exists()


def test_doctor_checks_the_registry_both_ways_and_fixes_on_request(seeded_workspace, tmp_path):
    import shutil

    from core.store import Workspace

    root = tmp_path / "copy"
    shutil.copytree(seeded_workspace["root"], root)
    ws = Workspace.open(root)
    with ws.connect() as con:  # the copy's rows still name the original's files: point them at the copy
        for table, column in (("datasets", "source"), ("runs", "run_dir"), ("predictions", "path")):
            con.execute(f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)",
                        (seeded_workspace["root"], str(root)))
    assert check_workspace(ws).healthy
    (prediction,) = [p for p in ws.list_predictions() if p["run_id"] == seeded_workspace["run_id"]
                     and p["dataset_id"] == seeded_workspace["test_set_id"]]
    os.unlink(prediction["path"])
    orphan = ws.predictions_dir / "nobody__names-me.parquet"
    orphan.write_bytes(b"PAR1")
    report = check_workspace(ws)
    assert any("the file is gone" in p and prediction["path"] in p for p in report.problems)
    assert report.orphans == [str(orphan)] and not report.healthy
    done = _doctor(root)
    assert done.returncode == 1 and "the file is gone" in done.stdout and str(orphan) in done.stdout
    fixed = _doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert not orphan.exists() and ws.find_predictions(prediction["run_id"], prediction["dataset_id"]) is None
    assert check_workspace(ws).healthy


def test_doctor_reports_a_damaged_registry(workspace):
    with workspace.connect() as con:
        con.executemany("INSERT INTO settings (key, value) VALUES (?, ?)", [(f"k{i}", "v" * 500) for i in range(200)])
    with sqlite3.connect(workspace.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(workspace.db_path.read_bytes())
    for page in range(2, len(data) // 4096):  # scramble every b-tree page header but the first page's
        data[page * 4096: page * 4096 + 12] = b"\xff" * 12
    workspace.db_path.write_bytes(bytes(data))
    report = check_workspace(workspace)
    assert report.problems and re.search(r"the workspace registry .* is damaged \((database disk image is "
                                         r"malformed|integrity check)", report.problems[0])
    assert _doctor(workspace.root).returncode == 1


def test_doctor_does_not_call_the_launchers_slot_folder_an_unlisted_run(workspace):
    from core.store.doctor import check_workspace
    from core.train.launcher import acquire_slot

    slot = acquire_slot(workspace, "cpu")  # what every run does: a lock file under runs/.slots
    slot.close()
    assert workspace.slots_dir.is_dir()
    assert not any(".slots" in note for note in check_workspace(workspace).notes)
