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


def _study(ws: Workspace, name: str) -> str:
    from core.readers import create_study

    return create_study(ws, "ts-1", ["a.png", "b.png", "c.png"], "oct-kermany", name=name)


def test_a_study_no_reader_joined_is_deleted_one_with_answers_is_archived_and_closed(workspace):
    from core.readers import join_study, list_studies, record_answer
    from core.readers.lifecycle import archive_study, delete_study, rename_study, users_of_study

    empty, graded = _study(workspace, "pilot"), _study(workspace, "main study")
    join_study(workspace, graded, "dr-a")
    record_answer(workspace, graded, "dr-a", "a.png", "CNV")
    assert users_of_study(workspace, empty) == [] and users_of_study(workspace, graded) == ["1 answer(s) by 1 reader(s)"]
    assert delete_study(workspace, empty).outcome == "deleted"
    with workspace.connect() as con:  # its image list went with it
        assert con.execute("SELECT COUNT(*) FROM study_items WHERE study_id=?", (empty,)).fetchone()[0] == 0
    removal = delete_study(workspace, graded)
    assert removal.outcome == "archived" and removal.users == ("1 answer(s) by 1 reader(s)",)
    assert [s["id"] for s in list_studies(workspace)] == []  # hidden from the pickers
    assert [s["id"] for s in list_studies(workspace, include_archived=True)] == [graded]
    with workspace.connect() as con:  # the clinician's answer is kept
        assert con.execute("SELECT label FROM answers WHERE study_id=?", (graded,)).fetchone()[0] == "CNV"
    with pytest.raises(InputError, match="'main study' was archived: it takes no more readers or answers"):
        record_answer(workspace, graded, "dr-a", "b.png", "DME")
    with pytest.raises(InputError, match="was archived"):
        join_study(workspace, graded, "dr-b")
    archive_study(workspace, graded, restore=True)
    record_answer(workspace, graded, "dr-a", "b.png", "DME")  # open again
    other = _study(workspace, "second")
    with pytest.raises(InputError, match="a reader study named 'MAIN study' already exists"):  # case aside
        rename_study(workspace, other, " MAIN  study ")
    assert rename_study(workspace, other, "  second   reading ") == "second reading"


def test_studies_command_line_and_roles(workspace):
    from core.readers.lifecycle import delete_study, rename_study
    from core.store.access import READER, RESEARCHER, AccessDenied, Actor

    study_id = _study(workspace, "tidy me")
    with pytest.raises(AccessDenied, match=f"reader study {study_id}: not allowed"):
        rename_study(workspace, study_id, "x", actor=Actor("r1", READER))
    with pytest.raises(AccessDenied, match="delete data needs the role admin"):
        delete_study(workspace, study_id, actor=Actor("res", RESEARCHER))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "studies", "--workspace", str(workspace.root), *args],
                              capture_output=True, text=True, timeout=120)

    listed = cli("list")
    assert listed.returncode == 0 and study_id in listed.stdout and "0 reader(s), 0 finished" in listed.stdout
    assert cli("rename", study_id, "tidied").returncode == 0
    assert cli("archive", study_id).returncode == 0 and study_id not in cli("list").stdout
    assert "tidied  [archived]" in cli("list", "--all").stdout
    assert cli("restore", study_id).returncode == 0 and "[archived]" not in cli("list").stdout
    assert cli("delete", study_id).stdout.strip() == f"deleted {study_id}"
    missing = cli("delete", "study-nope")
    assert missing.returncode == 2 and "reader study 'study-nope' does not exist" in missing.stderr
