"""A run's status: status.json in its folder (always) mirrored into the workspace registry (when registered)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# Process checks live in core.store (doctor uses them too; store sits below train); re-exported for train's modules.
from core.store.processes import process_alive, process_start_token, process_state  # noqa: F401

STATUS_FILE = "status.json"
CANCEL_FILE = "cancel"
LOG_FILE = "train.log"
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
_REGISTRY_FIELDS = ("status", "started", "finished", "pid", "error", "best_metric", "best_metric_name", "device")


def registered_run_id(workspace, run_dir: str | Path) -> str | None:
    """The registry id of the run kept in run_dir, or None for a run folder outside the registry."""
    run_dir = Path(run_dir)
    run = workspace.get_run(run_dir.name) if workspace is not None else None
    if run is not None and Path(run["run_dir"]).resolve() == run_dir.resolve():
        return run["id"]
    return None


def read_status(run_dir: str | Path) -> dict:
    """The run's status.json, or {} when absent or (briefly, mid-replace on odd filesystems) unreadable."""
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: str | Path, workspace=None, run_id: str | None = None, **fields: Any) -> dict:
    """Merge `fields` into status.json atomically and mirror the registry's columns."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    status.update(fields)
    status["updated"] = time.time()
    tmp = run_dir / f".{STATUS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(status, indent=2, sort_keys=True))
    tmp.replace(run_dir / STATUS_FILE)
    if workspace is not None and run_id is not None and workspace.get_run(run_id) is not None:
        workspace.update_run(run_id, **{k: v for k, v in fields.items() if k in _REGISTRY_FIELDS})
    return status


def log_tail(run_dir: str | Path, lines: int = 12, max_bytes: int = 16_384) -> str:
    """The last lines of the run's train.log (where a crash's traceback lands)."""
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # Progress bars redraw with carriage returns; keep only what a person would see last.
    rows = [r.split("\r")[-1] for r in text.splitlines()]
    return "\n".join([r for r in rows if r.strip()][-lines:])[-4000:]


def cancel_requested(run_dir: str | Path | None) -> bool:
    return run_dir is not None and (Path(run_dir) / CANCEL_FILE).exists()


def request_cancel(run_dir: str | Path) -> None:
    (Path(run_dir) / CANCEL_FILE).write_text(str(time.time()))
