"""Cleaning up runs and test sets: rename, archive, delete (files too); records others use are archived."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.errors import InputError
from core.store import Workspace
from core.store.lifecycle import (archive_run, delete_run, delete_test_set, rename_run, rename_test_set,
                                  users_of_run, users_of_test_set)

CONFIG = {"backbone": "test_resnet", "mode": "features", "task": "oct-kermany"}


def _finished_run(ws: Workspace, name: str, status: str = "succeeded", **config) -> str:
    run_id = ws.create_run(config={**CONFIG, **config}, name=name)
    ws.update_run(run_id, status=status)
    (ws.runs_dir / run_id / "events.jsonl").write_text("{}\n")
    return run_id


def test_delete_a_run_nobody_uses_removes_its_row_and_folder(workspace):
    run_id = _finished_run(workspace, "cancelled try", status="cancelled")
    removal = delete_run(workspace, run_id)
    assert removal.outcome == "deleted" and removal.users == ()
    assert workspace.get_run(run_id) is None and not (workspace.runs_dir / run_id).exists()
    with pytest.raises(InputError, match="no run with id"):
        delete_run(workspace, run_id)


def test_a_run_others_use_is_archived_not_destroyed(workspace):
    used = _finished_run(workspace, "model")
    workspace.record_predictions(used, "ts-1", workspace.predictions_path(used, "ts-1"), 10)
    source = _finished_run(workspace, "source")
    recalibrated = _finished_run(workspace, "source (recalibrated)",
                                 extra={"recalibration": {"source_run": source}})
    reported = _finished_run(workspace, "reported")
    (workspace.reports_dir / "demo-report.json").write_text(json.dumps({"run_id": reported}))
    assert users_of_run(workspace, used) == ["predictions on test set ts-1"]
    assert users_of_run(workspace, source) == [f"recalibrated run {recalibrated}"]
    for run_id in (used, source, reported):
        removal = delete_run(workspace, run_id)
        assert removal.outcome == "archived" and removal.users, run_id
        assert (workspace.runs_dir / run_id / "events.jsonl").exists()  # kept
        assert workspace.get_run(run_id)["archived"]
    assert [r["id"] for r in workspace.list_runs()] == [recalibrated]  # hidden from every list
    assert {r["id"] for r in workspace.list_runs(include_archived=True)} == {used, source, recalibrated, reported}
    archive_run(workspace, used, restore=True)
    assert used in [r["id"] for r in workspace.list_runs()]


def test_an_active_run_is_neither_deleted_nor_archived(workspace):
    run_id = workspace.create_run(config=CONFIG, name="training now")  # status 'queued'
    for action in (delete_run, archive_run):
        with pytest.raises(InputError, match="still queued; cancel it"):
            action(workspace, run_id)
    assert workspace.get_run(run_id)["archived"] is None and (workspace.runs_dir / run_id).exists()


def test_rename_checks_the_name(workspace):
    run_id = _finished_run(workspace, "old")
    assert rename_run(workspace, run_id, "  baseline   lite0 ") == "baseline lite0"
    assert workspace.get_run(run_id)["name"] == "baseline lite0"
    with pytest.raises(InputError, match="must not be empty"):
        rename_run(workspace, run_id, "   ")


def test_a_run_outside_the_workspace_keeps_its_folder(workspace, tmp_path):
    other = Workspace.open(tmp_path / "other")
    run_id = _finished_run(other, "elsewhere")
    row = other.get_run(run_id)
    workspace.create_run(config=CONFIG, name="x", run_id="run-x")
    workspace.update_run("run-x", status="failed")
    with workspace.connect() as con:
        con.execute("UPDATE runs SET run_dir=? WHERE id='run-x'", (row["run_dir"],))
    assert delete_run(workspace, "run-x").removed_files == ()
    assert (other.runs_dir / run_id).exists()


def test_test_sets_delete_their_upload_or_archive_when_used(workspace, tmp_path):
    upload = workspace.uploads_dir / "upload-20260101-000000-clinic-abcd"
    (upload / "clinic").mkdir(parents=True)
    (upload / "clinic" / "a.png").write_bytes(b"x")
    server = tmp_path / "server-folder"
    server.mkdir()
    uploaded = workspace.register_dataset(name="clinic", source=upload / "clinic", task="oct-kermany",
                                          fingerprint="f1", n_images=1, role="test_set")
    on_server = workspace.register_dataset(name="server", source=server, task="oct-kermany", fingerprint="f2",
                                           n_images=1, role="test_set")
    used = workspace.register_dataset(name="used", source=server, task="oct-kermany", fingerprint="f3",
                                      n_images=1, role="test_set")
    workspace.record_predictions("run-1", used, workspace.predictions_path("run-1", used), 1)
    assert rename_test_set(workspace, uploaded, "clinic A") == "clinic A"
    assert users_of_test_set(workspace, used) == ["predictions of run run-1"]
    assert delete_test_set(workspace, uploaded).removed_files == (str(upload.resolve()),)
    assert not upload.exists() and workspace.get_dataset(uploaded) is None
    assert delete_test_set(workspace, on_server).outcome == "deleted" and server.is_dir()  # never a server folder
    assert delete_test_set(workspace, used).outcome == "archived" and workspace.get_dataset(used)["archived"]
    assert workspace.list_datasets(role="test_set") == []


def test_runs_command_line(workspace):
    keep = _finished_run(workspace, "keep me")
    gone = _finished_run(workspace, "drop me", status="cancelled")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "runs", "--workspace", str(workspace.root), *args],
                              capture_output=True, text=True, timeout=120)

    listed = cli("list")
    assert listed.returncode == 0 and keep in listed.stdout and "drop me" in listed.stdout
    assert cli("rename", keep, "baseline").returncode == 0 and workspace.get_run(keep)["name"] == "baseline"
    assert cli("delete", gone).returncode == 0 and workspace.get_run(gone) is None
    assert cli("archive", keep).returncode == 0 and keep not in cli("list").stdout
    assert "[archived]" in cli("list", "--all").stdout
    missing = cli("delete", "run-nope")
    assert missing.returncode == 2 and "no run with id 'run-nope'" in missing.stderr


def test_roles_decide_who_may_delete_rename_or_archive(workspace):
    from core.store.access import ADMIN, READER, RESEARCHER, AccessDenied, Actor

    run_id = _finished_run(workspace, "old try")
    reader, researcher = Actor("r1", READER), Actor("res", RESEARCHER)
    for call in (lambda a: rename_run(workspace, run_id, "x", actor=a), lambda a: archive_run(workspace, run_id, actor=a),
                 lambda a: delete_run(workspace, run_id, actor=a)):
        with pytest.raises(AccessDenied, match=f"run {run_id}: not allowed"):
            call(reader)
    with pytest.raises(AccessDenied, match="delete data needs the role admin"):
        delete_run(workspace, run_id, actor=researcher)  # destroying files is for admins
    assert workspace.get_run(run_id) is not None and (workspace.runs_dir / run_id).exists()
    assert rename_run(workspace, run_id, "renamed", actor=researcher) == "renamed"
    assert delete_run(workspace, run_id, actor=Actor("boss", ADMIN)).outcome == "deleted"
