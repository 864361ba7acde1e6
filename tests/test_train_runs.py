"""Runs as separate processes: queue, cancel, resume, and a killed run marked failed with its reason."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from core.train import cancel_run, launch_run, read_events, reconcile_runs, resume_run
from core.train.status import process_start_token, write_status
from tests.train_fixtures import (
    TINY,
    make_kermany_folder,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

FINAL = ("succeeded", "failed", "cancelled")


def _wait(predicate, timeout=180.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _config(data, **kw):
    return {"data": str(data), "mode": "finetune", "augmentation": False, **TINY, "batch_size": 4, **kw}


@pytest.fixture(autouse=True)
def _stop_children():
    """Whatever happens in a test, no training process it launched outlives it."""
    from core.train import launcher

    yield
    for run_id, proc in list(launcher._CHILDREN.items()):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        launcher._CHILDREN.pop(run_id, None)


@pytest.fixture
def oct_folder(tmp_path):
    return make_kermany_folder(tmp_path / "oct", per_class=6, test_per_class=1)


@pytest.mark.slow
def test_queue_cancel_and_resume(oct_folder, workspace):
    first = launch_run(_config(oct_folder, epochs=40, patience=0), workspace)
    second = launch_run(_config(oct_folder, epochs=1), workspace)
    status = lambda run_id: workspace.get_run(run_id)["status"]  # noqa: E731
    _wait(lambda: status(first) == "running" and read_events(workspace.runs_dir / first, "epoch"),
          what="the first run to finish an epoch")
    assert status(second) == "queued"  # one job per device at a time; the second waits its turn
    assert cancel_run(first, workspace) in ("cancelling", "cancelled")
    _wait(lambda: status(first) == "cancelled", what="the cancel")
    _wait(lambda: status(second) in FINAL, what="the queued run")
    assert status(second) == "succeeded"
    run = workspace.get_run(second)
    assert run["started"] and run["finished"] >= run["started"] and run["best_metric_name"] == "auroc"
    assert (workspace.runs_dir / second / "checkpoint" / "model.safetensors").exists()
    assert (workspace.runs_dir / first / "checkpoint" / "model.safetensors").exists()  # cancel saved it
    assert "finetune run on cpu" in (workspace.runs_dir / second / "train.log").read_text()  # the child's output

    epochs_before = max(e["epoch"] for e in read_events(workspace.runs_dir / first, "epoch"))
    config = json.loads((workspace.runs_dir / first / "config.json").read_text())
    assert config["task"]["name"] == "oct-kermany"  # the child resolved and saved the full config
    resume_run(first, workspace)
    _wait(lambda: status(first) == "running" and [e for e in read_events(workspace.runs_dir / first, "status")
                                                   if e.get("resumed")], what="the resumed run")
    cancel_run(first, workspace)
    _wait(lambda: status(first) in FINAL, what="the second cancel")
    resumed = [e for e in read_events(workspace.runs_dir / first, "status") if e.get("resumed")]
    assert resumed and epochs_before >= 1


@pytest.mark.slow
def test_killed_run_is_marked_failed_with_the_reason(oct_folder, workspace):
    run_id = launch_run(_config(oct_folder, epochs=200, patience=0), workspace)
    _wait(lambda: workspace.get_run(run_id)["status"] == "running", what="the run to start")
    pid = workspace.get_run(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)  # what the out-of-memory killer does
    _wait(lambda: run_id in reconcile_runs(workspace), timeout=30, what="reconcile to notice")
    run = workspace.get_run(run_id)
    assert run["status"] == "failed" and run["finished"]
    assert f"pid {pid}" in run["error"] and "SIGKILL" in run["error"]
    assert reconcile_runs(workspace) == []  # nothing left running forever, nothing changed twice


def _registered_running_run(workspace, pid, token=None, log=""):
    run_id = workspace.create_run(config={"backbone": "test_efficientnet", "mode": "features", "task": "x"})
    run_dir = workspace.runs_dir / run_id
    (run_dir / "train.log").write_text(log)
    workspace.update_run(run_id, status="running", pid=pid)
    write_status(run_dir, workspace, run_id, status="running", pid=pid, proc_start=token)
    return run_id


def test_reconcile_marks_a_dead_process_failed_with_the_log_tail(workspace):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_id = _registered_running_run(workspace, dead.pid, log="epoch 3\nTraceback (most recent call last):\n"
                                                               "MemoryError: out of memory\n")
    alive = _registered_running_run(workspace, os.getpid(), process_start_token(os.getpid()))
    assert reconcile_runs(workspace) == [run_id]
    run = workspace.get_run(run_id)
    assert run["status"] == "failed" and "MemoryError: out of memory" in run["error"]
    assert workspace.get_run(alive)["status"] == "running"  # this very process is alive: left alone


def test_reconcile_is_not_fooled_by_a_reused_pid(workspace):
    # Our own pid is alive, but with another start time it is some other process now.
    run_id = _registered_running_run(workspace, os.getpid(), token="1")
    assert reconcile_runs(workspace) == [run_id]
    assert workspace.get_run(run_id)["status"] == "failed"


def test_cancel_a_run_whose_process_is_gone(workspace):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_id = _registered_running_run(workspace, dead.pid)
    assert cancel_run(run_id, workspace) == "cancelled"
    assert workspace.get_run(run_id)["status"] == "cancelled"
    assert cancel_run(run_id, workspace) == "cancelled"  # idempotent


def test_launch_rejects_bad_input_before_starting_anything(workspace, tmp_path):
    from core.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        launch_run({"data": str(tmp_path / "nowhere")}, workspace)
    with pytest.raises(InputError, match="unknown backbone"):
        launch_run({"data": str(tmp_path), "backbone": "alexnet-9000"}, workspace)
    assert workspace.list_runs() == []


def test_an_identical_submission_is_refused_while_the_first_is_active(oct_folder, workspace):
    from concurrent.futures import ThreadPoolExecutor

    from core.train.launcher import DuplicateRunError

    config = _config(oct_folder, epochs=200, patience=0, name="double click")
    # Two clicks at once (two threads): exactly one run is created, the other is told which one exists.
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: _launch_or_error(config, workspace), range(2)))
    (first,) = [o for o in outcomes if isinstance(o, str)]
    (refused,) = [o for o in outcomes if isinstance(o, DuplicateRunError)]
    assert refused.run_id == first and first in str(refused) and "'double click'" in str(refused)
    assert [r["id"] for r in workspace.list_runs()] == [first]
    # Unnamed and other settings: different submissions, accepted.
    other = launch_run({**config, "epochs": 199}, workspace)
    unnamed = launch_run({**config, "name": ""}, workspace)
    with pytest.raises(DuplicateRunError, match=unnamed):
        launch_run({**config, "name": ""}, workspace)
    for run_id in (first, other, unnamed):
        cancel_run(run_id, workspace)
    _wait(lambda: workspace.get_run(first)["status"] in FINAL, what="the cancel")
    again = launch_run(config, workspace)  # once the first has ended, the same settings may run again
    assert again != first
    cancel_run(again, workspace)


def _launch_or_error(config, workspace):
    from core.train.launcher import DuplicateRunError

    try:
        return launch_run(config, workspace)
    except DuplicateRunError as exc:
        return exc


def test_a_finished_child_is_reaped_without_anyone_asking(workspace):
    # A dashboard server that starts runs must not collect <defunct> children (issue 22 item 7): the child here
    # fails at once (its run folder has no config) and nobody calls reconcile_runs.
    from core.store.processes import process_state
    from core.train.launcher import _spawn

    run_id = workspace.create_run(config={"backbone": "test_efficientnet", "mode": "features", "task": "x"})
    proc = _spawn(run_id, workspace.runs_dir / run_id, workspace, resume=False)
    _wait(lambda: proc.returncode is not None, timeout=60, what="the child to exit")
    assert proc.returncode != 0
    assert process_state(proc.pid) is None  # gone from the process table, not a zombie ('Z')
