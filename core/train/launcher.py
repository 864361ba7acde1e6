"""Runs as separate processes: launch, queue (device slots), cancel, resume, and reconcile dead ones."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from core.errors import InputError
from core.store import Workspace, audit_trail
from core.store.access import SHELL, Actor, require
from core.train.config import RunConfig, as_config
from core.train.events import append_event
from core.train.status import (
    FINAL_STATUSES,
    LOG_FILE,
    cancel_requested,
    log_tail,
    process_alive,
    process_start_token,
    read_status,
    request_cancel,
    write_status,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Concurrent runs per device kind unless the workspace setting "max_concurrent_runs" says otherwise:
# one GPU job at a time, and one CPU job so a small machine is not oversubscribed.
DEFAULT_SLOTS = {"cuda": 1, "cpu": 1}
# A registered run with no process after this long was never started (the launcher died mid-way).
_NEVER_STARTED_AFTER_S = 120.0
# Popen handles of children this process started: polling them reaps zombies and yields exit codes.
_CHILDREN: dict[str, subprocess.Popen] = {}


class DuplicateRunError(InputError):
    """A submission identical to a run that is still queued or running; `run_id` names that run."""

    def __init__(self, run: dict):
        self.run_id = run["id"]
        super().__init__(f"an identical run is already {run['status']}: {run['name']!r} ({run['id']}); "
                         "follow it on the Train page (or `python -m core runs list`), or cancel it first "
                         "to start this one again")


@contextmanager
def _launch_lock(ws: Workspace):
    """Serialises check-then-create across processes and threads (two clicks, two browser tabs, the CLI)."""
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(ws.runs_dir / ".launch.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def active_duplicate(ws: Workspace, config: dict, name: str) -> dict | None:
    """The queued or running run with this name and a config (RunConfig.to_dict()) equal to this one, if any."""
    for run in ws.list_runs():
        if run["status"] in ("queued", "running") and run.get("config") == config and (
                run["name"] == name if name else run["name"] == run["id"]):
            return run
    return None


def _workspace(workspace: Workspace | str | Path | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)


def device_kind(device: str) -> str:
    """'cuda' or 'cpu': which slot pool a run waits in."""
    if device == "auto":
        import torch  # only here: the launcher itself never needs torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _spawn(run_id: str, run_dir: Path, ws: Workspace, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core", "train", "--run-dir", str(run_dir)]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ)
    env["CORE_WORKSPACE"] = str(ws.root)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    with open(run_dir / LOG_FILE, "ab") as log:
        # A new session: the run keeps going when the dashboard (or its terminal) goes away.
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _CHILDREN[run_id] = proc
    # Reap the child the moment it exits (a dashboard server otherwise keeps one <defunct> process per finished
    # run); Popen keeps its exit code for reconcile_runs.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    write_status(run_dir, ws, run_id, pid=proc.pid, proc_start=process_start_token(proc.pid))
    return proc


def launch_run(config: RunConfig | dict, workspace: Workspace | str | Path | None = None, *,
               name: str = "", actor: Actor = SHELL) -> str:
    """Register a run (status 'queued'), write its config.json and start `python -m core train` detached.

    The child waits for a free device slot, then trains; it reports its own status. Returns the run id."""
    require(actor, "start_run")
    ws = _workspace(workspace)
    cfg = as_config(config)
    if not cfg.data or not Path(cfg.data).exists():
        raise InputError(f"run config: data path {cfg.data!r} does not exist")
    from core.models.registry import get_backbone

    get_backbone(cfg.backbone)  # unknown names fail here, not minutes later in the child
    name = name or cfg.name
    full = cfg.to_dict()
    task_name = get_task_name(cfg)
    with _launch_lock(ws):
        reconcile_runs(ws)  # a dead run is not a duplicate
        same = active_duplicate(ws, full, name)
        if same is not None:
            raise DuplicateRunError(same)
        run_id = ws.create_run(config={**full, "task": task_name}, name=name)
        ws.update_run(run_id, config=full)
        run_dir = ws.runs_dir / run_id
        cfg.save(run_dir / "config.json")
        # device_kind ("auto" needs torch to resolve) is written by the child itself, first thing.
        write_status(run_dir, ws, run_id, status="queued", created=time.time())
    _spawn(run_id, run_dir, ws, resume=False)
    audit_trail.record(ws, actor, "run_launched", f"run {run_id}",
                       {"name": name, "backbone": cfg.backbone, "task": task_name})
    return run_id


def get_task_name(cfg: RunConfig) -> str:
    return str(cfg.task.get("name")) if cfg.task else "auto"


def resume_run(run_id: str, workspace: Workspace | str | Path | None = None) -> str:
    """Start a stopped fine-tune run again from its last saved epoch (same run id and folder)."""
    ws = _workspace(workspace)
    _get_run(ws, run_id)
    reconcile_runs(ws)
    run = ws.get_run(run_id)
    if run["status"] in ("queued", "running"):
        raise InputError(f"run {run_id} is still {run['status']}; cancel it before resuming")
    run_dir = Path(run["run_dir"])
    (run_dir / "cancel").unlink(missing_ok=True)
    write_status(run_dir, ws, run_id, status="queued", error=None, finished=None)
    _spawn(run_id, run_dir, ws, resume=True)
    return run_id


def _get_run(ws: Workspace, run_id: str) -> dict:
    run = ws.get_run(run_id)
    if run is None:
        raise InputError(f"no run with id {run_id!r} in workspace {ws.root}")
    return run


def cancel_run(run_id: str, workspace: Workspace | str | Path | None = None, *, actor: Actor = SHELL) -> str:
    """Ask a run to stop: it finishes its step, saves, and marks itself 'cancelled'.

    Returns the status now: 'cancelling' while the process winds down, else the final status."""
    require(actor, "cancel_run")
    ws = _workspace(workspace)
    run = _get_run(ws, run_id)
    if run["status"] in FINAL_STATUSES:
        return run["status"]
    run_dir = Path(run["run_dir"])
    request_cancel(run_dir)
    audit_trail.record(ws, actor, "run_cancelled", f"run {run_id}")
    status = read_status(run_dir)
    if process_alive(status.get("pid") or run.get("pid"), status.get("proc_start")) and not _exited(run_id):
        return "cancelling"
    write_status(run_dir, ws, run_id, status="cancelled", finished=time.time())
    append_event(run_dir, "status", status="cancelled")
    return "cancelled"


def _exited(run_id: str) -> int | None:
    """Exit code of a child this process started (reaping it), or None while it runs / when not ours."""
    proc = _CHILDREN.get(run_id)
    return None if proc is None else proc.poll()


def reconcile_runs(workspace: Workspace | str | Path | None = None) -> list[str]:
    """Mark 'queued'/'running' runs whose process is gone as failed, with the reason. Returns their ids."""
    ws = _workspace(workspace)
    changed = []
    now = time.time()
    for run in ws.list_runs():
        if run["status"] not in ("queued", "running"):
            continue
        run_id, run_dir = run["id"], Path(run["run_dir"])
        status = read_status(run_dir)
        if status.get("status") in FINAL_STATUSES:
            # The child finished but its registry write was lost (e.g. the database was locked).
            write_status(run_dir, ws, run_id, **{k: status.get(k) for k in
                                                   ("status", "finished", "error", "best_metric",
                                                    "best_metric_name")})
            changed.append(run_id)
            continue
        pid = status.get("pid") or run.get("pid")
        code = _exited(run_id)
        if code is None and process_alive(pid, status.get("proc_start")):
            continue
        if code is None and run_id in _CHILDREN:
            # Our child, seen between dying and being reaped: collect its exit status (how it ended).
            try:
                code = _CHILDREN[run_id].wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if pid is None and now - float(run.get("created") or now) < _NEVER_STARTED_AFTER_S:
            continue
        if cancel_requested(run_dir) and code == 0:
            write_status(run_dir, ws, run_id, status="cancelled", finished=now)
            append_event(run_dir, "status", status="cancelled")
        else:
            reason = _death_reason(pid, code, run_dir)
            write_status(run_dir, ws, run_id, status="failed", finished=now, exit_code=code, error=reason)
            append_event(run_dir, "status", status="failed", error=reason.split("\n")[0])
        changed.append(run_id)
    return changed


def _death_reason(pid, code, run_dir: Path) -> str:
    if pid is None:
        head = "the training process was never started"
    else:
        how = ""
        if code is not None and code < 0:
            try:
                how = f" (killed by {signal.Signals(-code).name})"
            except ValueError:
                how = f" (killed by signal {-code})"
        elif code is not None:
            how = f" (exit code {code})"
        head = (f"the training process (pid {pid}) ended without reporting a result{how}: "
                "it was killed, ran out of memory, or crashed")
    tail = log_tail(run_dir)
    return head + (f"\nlast lines of {LOG_FILE}:\n{tail}" if tail else "")


# -- device slots (used by the child) --------------------------------------------------------------
def _slot_limit(ws: Workspace, kind: str) -> int:
    limits = ws.get_setting("max_concurrent_runs", None) or {}
    try:
        return max(1, int(limits.get(kind, DEFAULT_SLOTS[kind])))
    except (TypeError, ValueError, AttributeError):
        return DEFAULT_SLOTS[kind]


def _older_queued_waiting(ws: Workspace, run_id: str | None, kind: str) -> bool:
    """Whether an earlier queued run of the same device kind is still waiting (first come, first served)."""
    if run_id is None:
        return False
    me = ws.get_run(run_id)
    if me is None:
        return False
    for run in ws.list_runs(status="queued"):
        if run["id"] == run_id or run["created"] >= me["created"]:
            continue
        status = read_status(run["run_dir"])
        if status.get("device_kind", kind) == kind and process_alive(status.get("pid"), status.get("proc_start")):
            return True
    return False


def acquire_slot(ws: Workspace, kind: str, run_dir: Path | None = None, run_id: str | None = None,
                 poll_s: float = 0.5, on_wait=None):
    """Block until a device slot is free; returns the held lock file (released when closed or when the
    process dies, so a killed run never blocks the queue), or None if the run was cancelled meanwhile."""
    lock_dir = ws.slots_dir
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        if cancel_requested(run_dir):
            return None
        if not _older_queued_waiting(ws, run_id, kind):
            for i in range(_slot_limit(ws, kind)):
                fh = open(lock_dir / f"{kind}-{i}.lock", "a+")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fh.seek(0)
                    fh.truncate()
                    fh.write(f"{os.getpid()} {run_id or ''}\n")
                    fh.flush()
                    return fh
                except BlockingIOError:
                    fh.close()
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(poll_s)
