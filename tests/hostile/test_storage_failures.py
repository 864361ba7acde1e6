"""A full disk or unwritable workspace: a clear message naming the workspace and the cause; an answer that
could not be stored is never acknowledged, kept in the page and retried (issue 14, item 6)."""

from __future__ import annotations

import re
import sqlite3
import uuid

import pytest

from core.data.ingest import register_folder
from core.errors import StorageError
from core.readers import create_study, join_study, progress, record_answer
from tests.hostile.corpus import cases, run_with_file_size_limit
from tests.train_fixtures import make_kermany_folder


@pytest.fixture
def reading(workspace, tmp_path):
    """A study with one reader joined: (workspace, study id, reader id, first image id)."""
    folder = make_kermany_folder(tmp_path / "oct", per_class=1, test_per_class=1)
    test_set = register_folder(workspace, folder / "test", task="oct-kermany")
    study_id = create_study(workspace, test_set.dataset_id, test_set.dataset, "oct-kermany", subset_size=4)
    reader = f"dr-{uuid.uuid4().hex[:4]}"
    join_study(workspace, study_id, reader)
    image_id = test_set.dataset.table["image_id"].iat[0]
    with sqlite3.connect(workspace.db_path) as con:  # the WAL folded in: the next write must grow a file
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return workspace, study_id, reader, image_id


def _answers(workspace) -> int:
    with sqlite3.connect(workspace.db_path) as con:
        return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


@pytest.mark.parametrize("case", cases("storage"), ids=str)
def test_full_disk_gives_a_message_naming_the_workspace_and_stores_nothing(case, reading):
    workspace, study_id, reader, image_id = reading
    before = _answers(workspace)
    code, stderr = _run(case, workspace, study_id, reader, image_id)
    assert code == 2, stderr[-2000:]
    assert re.search(case.expect, stderr) and str(workspace.root) in stderr, stderr
    assert _answers(workspace) == before
    assert not list(workspace.uploads_dir.iterdir())  # nothing half-written left behind


def _run(case, workspace, study_id, reader, image_id):
    code = case.build(None).replace("sys.argv[1]", repr(str(workspace.root))).replace(
        "sys.argv[2]", repr(study_id)).replace("sys.argv[3]", repr(reader)).replace("sys.argv[4]", repr(image_id))
    return run_with_file_size_limit(code, 1)


def test_cli_on_a_full_disk_names_the_workspace_and_the_cause_without_a_traceback(tmp_path):
    env_code = ("import os, sys\n"
                f"os.environ['CORE_WORKSPACE'] = {str(tmp_path / 'ws')!r}\n"
                "from core.__main__ import main\n"
                f"sys.exit(main(['demo-data', '--out', {str(tmp_path / 'demo')!r}, '--per-class', '2', "
                "'--test-per-class', '1', '--size', '64']))\n")
    code, stderr = run_with_file_size_limit(env_code, 200)
    assert code == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert re.search(r"error: workspace .*ws: (writing .*|storing the result) failed: File too large; "
                     r"the disk \(or your quota\) is full", stderr), stderr


def test_reader_page_keeps_an_unstored_answer_and_retries_it(own_seeded_workspace, monkeypatch):
    """The failure is injected at the core call (a full disk cannot be made inside the test process, where
    pytest itself writes files); the storage message is the one record_answer gives on a full disk (above)."""
    seeded_workspace = own_seeded_workspace  # the page stores what it is given: keep it out of the shared workspace
    from core.data import load_dataset
    from core.store import Workspace
    from dashboard import reader_ui
    from tests.apptest import open_page

    workspace = Workspace.open(seeded_workspace["root"])
    row = workspace.get_dataset(seeded_workspace["test_set_id"])
    study_id = create_study(workspace, row["id"], load_dataset(row["source"], "oct-kermany"), "oct-kermany",
                            subset_size=4, seed=3, name=f"full disk {uuid.uuid4().hex[:6]}")
    reader = f"dr-{uuid.uuid4().hex[:6]}"
    real, failing = record_answer, {"on": True}

    def disk_full_then_fine(ws, *args, **kwargs):
        if failing["on"]:
            raise StorageError(f"workspace {ws.root}: writing to the registry failed: database or disk is full; "
                               "the disk (or your quota) is full: free some space and try again")
        return real(ws, *args, **kwargs)

    monkeypatch.setattr(reader_ui, "record_answer", disk_full_then_fine)
    at = open_page("../pages/reader_study.py", timeout=120, role="reader", user=reader)  # grades as themself
    at.selectbox(key="rs_test_set").set_value(row["id"]).run()  # other tests may have added test sets
    at.selectbox(key="rs_study").set_value(study_id).run()
    at.button(key="rs_join").click().run()
    caption = at.get("image")[0].captions[0]
    at.button(key="rs_class_0").click().run()
    assert not at.exception
    assert any("not saved" in e.value for e in at.error) and not at.success
    assert at.get("image")[0].captions[0] == caption  # still on the same image: nothing acknowledged
    assert progress(workspace, study_id, reader).answered == 0
    at.button(key="rs_retry_unsaved").click().run()  # still full: still kept
    assert any("not saved" in e.value for e in at.error)
    failing["on"] = False
    at.button(key="rs_retry_unsaved").click().run()
    assert any("was saved now" in s.value for s in at.success)
    assert progress(workspace, study_id, reader).answered == 1
    assert at.get("image")[0].captions[0] != caption
