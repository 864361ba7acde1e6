"""Audits of registered datasets in background threads, and their state (cached, running, failed or missing).

A thread touches only its job dict and the workspace files, so a dashboard page can start one and poll it; the
result lands in the workspace cache, where any later session or `python -m core audit` finds it."""

from __future__ import annotations

import threading
import time

from core.audit.report import AuditOptions, audit_key, cached_audit, read_cached_audit
from core.errors import InputError, run_job
from core.store import Workspace

PIXELS_ONLY = AuditOptions(features=False)
FULL = AuditOptions()
_LOCK = threading.Lock()
_JOBS: dict[str, dict] = {}


def registered_key(ws: Workspace, dataset_id: str, against_id: str | None = None, run_id: str | None = None,
                   options: AuditOptions = PIXELS_ONLY) -> str:
    """The audit cache key from the registry's fingerprints (no image is read)."""
    record = ws.get_dataset(dataset_id)
    if record is None:
        raise InputError(f"no dataset or test set with id {dataset_id!r} in workspace {ws.root}")
    against = ws.get_dataset(against_id) if against_id else None
    if against_id and against is None:
        raise InputError(f"no dataset with id {against_id!r} in workspace {ws.root}")
    return audit_key(record["fingerprint"], record["task"], against["fingerprint"] if against else None, run_id,
                     options)


def _job_id(ws: Workspace, key: str) -> str:
    return f"{ws.root}|{key}"


def audit_state(ws: Workspace, dataset_id: str, against_id: str | None = None, run_id: str | None = None) -> dict:
    """{"status": "done" | "running" | "failed" | "missing", "report", "job", "fuller"}: the fullest cached audit
    (with backbone features if there is one, else pixels only), else the newest job for it. "fuller": the job of the
    full audit (backbone features) started over a cached pixels-only report, while it runs or after it failed (its
    result would replace that report), else None, so a page shows its progress rather than the old report alone."""
    for options in ((FULL, PIXELS_ONLY) if run_id is None else (FULL,)):
        report = read_cached_audit(ws, registered_key(ws, dataset_id, against_id, run_id, options))
        if report is not None:
            fuller = None
            if options is PIXELS_ONLY:
                fuller = _JOBS.get(_job_id(ws, registered_key(ws, dataset_id, against_id, run_id, FULL)))
                fuller = fuller if fuller is not None and fuller["status"] in ("running", "failed") else None
            return {"status": "done", "report": report, "job": None, "fuller": fuller}
    jobs = [_JOBS.get(_job_id(ws, registered_key(ws, dataset_id, against_id, run_id, o))) for o in (FULL, PIXELS_ONLY)]
    jobs = [j for j in jobs if j is not None]
    if not jobs:
        return {"status": "missing", "report": None, "job": None, "fuller": None}
    job = max(jobs, key=lambda j: j["started"])
    return {"status": job["status"], "report": None, "job": job, "fuller": None}


def preload(options: AuditOptions) -> None:
    """Import what the audit thread will need, in the caller's thread: two threads importing the same C-extension
    packages (scipy, PyWavelets, torch) at once can deadlock, and the dashboard imports in its script threads."""
    import imagehash  # noqa: F401
    import scipy.stats  # noqa: F401

    import core.data.ingest  # noqa: F401

    if options.features:
        import cleanlab.filter  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.metrics  # noqa: F401
        import sklearn.model_selection  # noqa: F401
        import torch  # noqa: F401

        import core.models  # noqa: F401
        import core.train.features  # noqa: F401
        import core.train.recipe  # noqa: F401


def _run(job: dict, root: str, dataset_id: str, against_id: str | None, run_id: str | None,
         options: AuditOptions) -> None:
    from core.data.ingest import load_registered

    def work() -> None:
        ws = Workspace.open(root)
        ds = load_registered(ws, dataset_id)
        against = load_registered(ws, against_id) if against_id else None
        run = ws.get_run(run_id) if run_id else None

        def progress(step: str, done: int, total: int) -> None:
            job.update(step=step, done=int(done), total=int(total))

        cached_audit(ws, ds, against, run, options, progress=progress)
        job["status"] = "done"

    run_job(job, work)


def start_audit(ws: Workspace, dataset_id: str, against_id: str | None = None, run_id: str | None = None,
                options: AuditOptions = PIXELS_ONLY) -> dict:
    """Start the audit in a background thread unless it is cached or already running; returns its job dict."""
    key = registered_key(ws, dataset_id, against_id, run_id, options)
    with _LOCK:
        job = _JOBS.get(_job_id(ws, key))
        if job is not None and job["status"] == "running":
            return job
        if read_cached_audit(ws, key) is not None:
            return {"status": "done", "started": time.time(), "error": None}
        job = {"status": "running", "step": "starting", "done": 0, "total": None, "started": time.time(),
               "error": None, "features": options.features}
        _JOBS[_job_id(ws, key)] = job
    preload(options)
    threading.Thread(target=_run, args=(job, str(ws.root), dataset_id, against_id, run_id, options), daemon=True,
                     name=f"audit-{dataset_id}").start()
    return job


def wait(job: dict, timeout: float = 60.0) -> dict:
    """Block until a job finishes (for the command line and tests); returns it."""
    deadline = time.monotonic() + timeout
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    return job
