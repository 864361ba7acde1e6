"""Workspace folders and the SQLite registry."""

import multiprocessing as mp
import sqlite3

import pytest

from core.store import Workspace


def test_open_creates_folders_and_wal(workspace):
    for folder in workspace.folders():
        assert folder.is_dir()
    con = sqlite3.connect(workspace.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CORE_WORKSPACE", str(tmp_path / "elsewhere"))
    ws = Workspace.open()
    assert ws.root == (tmp_path / "elsewhere").resolve()


def test_dataset_registration_is_idempotent(workspace):
    a = workspace.register_dataset(name="oct", source="/data/oct", task="oct-kermany", fingerprint="abc",
                                   n_images=10, meta={"note": "x"})
    b = workspace.register_dataset(name="oct again", source="/data/oct", task="oct-kermany", fingerprint="abc",
                                   n_images=10)
    assert a == b
    assert workspace.get_dataset(a)["meta"] == {"note": "x"}
    t = workspace.register_dataset(name="oct", source="/data/oct", task="oct-kermany", fingerprint="abc",
                                   n_images=10, role="test_set")
    assert t != a
    assert [d["id"] for d in workspace.list_datasets(role="test_set")] == [t]


def test_run_lifecycle(workspace):
    run_id = workspace.create_run(config={"task": "oct-kermany", "backbone": "test_resnet", "mode": "features"})
    run = workspace.get_run(run_id)
    assert run["status"] == "queued" and (workspace.runs_dir / run_id).is_dir()
    workspace.update_run(run_id, status="running", pid=123)
    workspace.update_run(run_id, status="succeeded", best_metric=0.9, best_metric_name="auroc")
    run = workspace.get_run(run_id)
    assert (run["status"], run["best_metric"]) == ("succeeded", 0.9)
    with pytest.raises(ValueError):
        workspace.update_run(run_id, status="exploded")
    with pytest.raises(ValueError):
        workspace.update_run(run_id, run_dir="/etc")


def test_failed_transaction_keeps_what_was_stored(workspace):
    workspace.save_penalty("mine", "oct-kermany", [[0, 1], [1, 0]])
    with pytest.raises(RuntimeError):
        with workspace.connect() as con:
            con.execute("DELETE FROM penalty_matrices")
            raise RuntimeError("crash in the middle")
    assert workspace.list_penalties("oct-kermany") == {"mine": [[0, 1], [1, 0]]}


def test_settings_round_trip(workspace):
    assert workspace.get_setting("selection", {}) == {}
    workspace.set_setting("selection", {"run_id": "r1", "threshold": 0.3})
    assert workspace.get_setting("selection") == {"run_id": "r1", "threshold": 0.3}


def _writer(root, prefix, n):
    ws = Workspace.open(root)
    for i in range(n):
        ws.set_setting(f"{prefix}-{i}", i)


def test_concurrent_processes_lose_nothing(workspace):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(workspace.root), p, 100)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with workspace.connect() as con:
        assert con.execute("SELECT COUNT(*) FROM settings").fetchone()[0] == 200
