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


def test_backups_are_hourly_rolling_and_skip_a_new_registry(workspace):
    import time

    from core.store import backup

    assert not workspace.backups_dir.exists()  # an empty, new registry is not worth a copy
    workspace.set_setting("k", "v")
    now = time.time()
    first = backup.maybe_backup(workspace.db_path, now=now + backup.INTERVAL_S + 1)
    assert first is not None and first.path.parent == workspace.backups_dir
    assert backup.maybe_backup(workspace.db_path, now=now + backup.INTERVAL_S + 60) is None  # within the hour
    with sqlite3.connect(f"file:{first.path}?mode=ro", uri=True) as con:  # a real, complete, standalone copy
        assert con.execute("SELECT value FROM settings WHERE key='k'").fetchone() == ('"v"',)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    for hour in range(2, backup.KEEP + 5):
        assert backup.maybe_backup(workspace.db_path, now=now + hour * (backup.INTERVAL_S + 1)) is not None
    kept = backup.list_backups(workspace.db_path)
    assert len(kept) == backup.KEEP and first.path not in [b.path for b in kept]
    assert kept == sorted(kept, key=lambda b: b.taken, reverse=True)


def test_opening_an_old_registry_backs_it_up_before_migrating(tmp_path):
    from core.store.backup import list_backups

    root = tmp_path / "old"
    Workspace.open(root).create_run(config={"backbone": "b"}, name="old run")
    with sqlite3.connect(root / "registry.sqlite") as con:  # a registry from before archiving existed
        con.execute("ALTER TABLE runs DROP COLUMN archived")
        con.execute("DROP TABLE penalty_matrices")
    before = {b.path for b in list_backups(root / "registry.sqlite")}
    ws = Workspace.open(root)
    (made,) = [b for b in list_backups(ws.db_path) if b.path not in before]
    with sqlite3.connect(f"file:{made.path}?mode=ro", uri=True) as con:  # the registry as it was, unmigrated
        assert "archived" not in {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        assert con.execute("SELECT name FROM runs").fetchall() == [("old run",)]
    assert [r["name"] for r in ws.list_runs()] == ["old run"] and ws.list_penalties("t") == {}


def test_a_registry_damaged_after_opening_raises_a_storage_error(workspace):
    from core.errors import DamagedRegistryError

    for i in range(40):
        workspace.set_setting(f"k{i}", "x" * 800)
    with sqlite3.connect(workspace.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = workspace.db_path.read_bytes()
    workspace.db_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedRegistryError, match=r"registry .* is damaged \(database disk image is malformed\); "
                                                   r"no good backup of it is in .*backups; run `python -m core doctor "
                                                   r"--fix --workspace .*` to move it aside"):
        [workspace.get_setting(f"k{i}") for i in range(40)]
