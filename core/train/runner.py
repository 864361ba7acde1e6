"""The run process's side: wait for a device slot, train, report running/succeeded/failed/cancelled."""

from __future__ import annotations

import signal
import time
import traceback
from pathlib import Path
from typing import Callable

from core.errors import InputError
from core.store import Workspace
from core.train.config import RunConfig
from core.train.distributed import SINGLE, DistInfo
from core.train.events import append_event
from core.train.launcher import acquire_slot, device_kind
from core.train.status import process_start_token, registered_run_id, request_cancel, write_status


def _install_sigterm(run_dir: Path) -> None:
    """SIGTERM (a user's `kill`, a scheduler) becomes a graceful cancel: finish the step, save, stop."""
    def handler(signum, frame):
        request_cancel(run_dir)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass  # not the main thread (e.g. called from a test thread): cancel still works through the flag


def execute_run(run_dir: str | Path, workspace: Workspace, *, resume: bool = False,
                listener: Callable[[dict], None] | None = None, dist: DistInfo = SINGLE,
                log: Callable[[str], None] = print, use_slot: bool = True) -> tuple[int, dict]:
    """Train the run whose config.json is in run_dir, keeping its status current. Returns (exit code, summary)."""
    import os

    from core.train.trainer import run_training  # torch is imported only once a slot is ours

    run_dir = Path(run_dir)
    run_id = registered_run_id(workspace, run_dir)
    cfg = RunConfig.load(run_dir)
    main = dist.is_main
    if main:
        _install_sigterm(run_dir)
        write_status(run_dir, workspace, run_id, pid=os.getpid(), proc_start=process_start_token(os.getpid()),
                     device_kind=device_kind(cfg.device))
    slot = None
    if use_slot and main and not dist.enabled:
        # torchrun jobs are placed by whoever started torchrun; a single process waits its turn here.
        def waiting():
            log("waiting for a free device slot (another run is using it)")
            append_event(run_dir, "status", status="queued", message="waiting for a free device slot")

        slot = acquire_slot(workspace, device_kind(cfg.device), run_dir, run_id, on_wait=waiting)
        if slot is None:
            write_status(run_dir, workspace, run_id, status="cancelled", finished=time.time())
            append_event(run_dir, "status", status="cancelled", message="cancelled while queued")
            return 0, {"cancelled": True}
    try:
        if main:
            write_status(run_dir, workspace, run_id, status="running", started=time.time(), error=None,
                         finished=None)
            append_event(run_dir, "status", status="running", message=f"reading the dataset ({cfg.data})")
        summary = run_training(cfg, run_dir, workspace, resume=resume, listener=listener, dist=dist, log=log)
        if main:
            status = "cancelled" if summary.get("cancelled") else "succeeded"
            best = summary.get("best_metric")
            write_status(run_dir, workspace, run_id, status=status, finished=time.time(),
                         best_metric=float(best) if best is not None else None,
                         best_metric_name=summary.get("metric"), device=summary.get("device"), exit_code=0)
            append_event(run_dir, "status", status=status)
        return 0, summary
    except InputError as exc:
        if main:
            write_status(run_dir, workspace, run_id, status="failed", finished=time.time(), error=str(exc),
                         exit_code=2)
            append_event(run_dir, "status", status="failed", error=str(exc))
        raise
    except KeyboardInterrupt:
        if main:
            write_status(run_dir, workspace, run_id, status="cancelled", finished=time.time(),
                         error="interrupted from the keyboard")
        raise
    except BaseException as exc:  # noqa: BLE001 - any crash is recorded before the process ends
        if main:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            write_status(run_dir, workspace, run_id, status="failed", finished=time.time(), exit_code=1,
                         error=reason + "\n" + "".join(traceback.format_exception(exc)[-6:]))
            append_event(run_dir, "status", status="failed", error=reason)
        raise
    finally:
        if slot is not None:
            slot.close()
