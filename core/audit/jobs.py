"""Audits of registered datasets as background jobs on the process's job board (core.jobs, kind "audit"), and
their state (cached, running, failed, cancelled or missing).

A job touches only the workspace files, so a dashboard page can start one and poll it; the result lands in the
workspace cache, where any later session or `python -m core audit` finds it."""

from __future__ import annotations

from core.audit.report import AuditOptions, audit_key, cached_audit, read_cached_audit
from core.errors import InputError
from core.jobs import FAILED, Job, find_job, start_job
from core.store import Workspace

KIND = "audit"
PIXELS_ONLY = AuditOptions(features=False)
FULL = AuditOptions()


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


def audit_state(ws: Workspace, dataset_id: str, against_id: str | None = None, run_id: str | None = None) -> dict:
    """{"status": "done" | "running" | "failed" | "cancelled" | "missing", "report", "job", "fuller"}: the fullest
    cached audit (with backbone features if there is one, else pixels only), else the newest job for it (a
    core.jobs.Job; "running" while it is queued or running). "fuller": the job of the full audit (backbone features)
    started over a cached pixels-only report, while it runs or after it failed (its result would replace that
    report), else None, so a page shows its progress rather than the old report alone."""
    for options in ((FULL, PIXELS_ONLY) if run_id is None else (FULL,)):
        report = read_cached_audit(ws, registered_key(ws, dataset_id, against_id, run_id, options))
        if report is not None:
            fuller = None
            if options is PIXELS_ONLY:
                fuller = find_job(ws, KIND, registered_key(ws, dataset_id, against_id, run_id, FULL))
                fuller = fuller if fuller is not None and (fuller.active or fuller.state == FAILED) else None
            return {"status": "done", "report": report, "job": None, "fuller": fuller}
    jobs = [find_job(ws, KIND, registered_key(ws, dataset_id, against_id, run_id, o)) for o in (FULL, PIXELS_ONLY)]
    jobs = [j for j in jobs if j is not None]
    if not jobs:
        return {"status": "missing", "report": None, "job": None, "fuller": None}
    job = max(jobs, key=lambda j: j.started)
    return {"status": "running" if job.active else job.state, "report": None, "job": job, "fuller": None}


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


def _work(root: str, dataset_id: str, against_id: str | None, run_id: str | None, options: AuditOptions):
    """The job's work: `work(progress)` for core.jobs (never touches the UI)."""
    def work(progress) -> None:
        from core.data.ingest import load_registered

        progress(0.0, "Auditing: starting")
        ws = Workspace.open(root)
        ds = load_registered(ws, dataset_id)
        against = load_registered(ws, against_id) if against_id else None
        run = ws.get_run(run_id) if run_id else None

        def step(name: str, done: int, total: int) -> None:
            progress(min(1.0, done / total) if total else 0.0,
                     f"Auditing: {name}" + (f", {int(done):,} / {int(total):,} images" if total else ""))

        cached_audit(ws, ds, against, run, options, progress=step)

    return work


def start_audit(ws: Workspace, dataset_id: str, against_id: str | None = None, run_id: str | None = None,
                options: AuditOptions = PIXELS_ONLY, *, owner: str | None = None) -> Job | None:
    """Start the audit as a background job unless it is cached (None) or already running (that job)."""
    key = registered_key(ws, dataset_id, against_id, run_id, options)
    job = find_job(ws, KIND, key)
    if job is not None and job.active:
        return job
    if read_cached_audit(ws, key) is not None:
        return None
    preload(options)
    return start_job(ws, KIND, key, _work(str(ws.root), dataset_id, against_id, run_id, options), owner=owner,
                     title="the full audit" if options.features else "the audit")
