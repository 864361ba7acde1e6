"""Background jobs of this server process: the one board for the dataset audit, inference and explanation maps.

`start_job(workspace, kind, key, work, title=...)` runs `work(progress)` in a daemon thread and returns its `Job`;
the same (workspace, kind, key) while one is queued or running returns that one instead of starting a second.
`work` reports with `progress(fraction, message, done=, total=)` (done/total: the units whose measured rate predicts
the time left, see `Job.seconds_left`); once a cancel was requested that call raises `Cancelled`, which ends the
job as "cancelled". A failure ends it as "failed" with a message for the user: an InputError's (StorageError's)
own words, a storage OSError turned into a StorageError, anything else named in one line; the traceback goes to
the server's log, never to the page. The board lives as long as the process, so a page that reloads (a new session)
finds its job again by id (`get_job`) or by kind and key (`find_job`). Training runs are separate processes with
their own files (core/train/launcher.py), not jobs of this board."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import STORAGE_ERRNOS, InputError, storage_error

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = frozenset({QUEUED, RUNNING})
FINISHED_KEPT_S = 3600.0  # a finished job is forgotten an hour after it ended (its result lives in the workspace)


class Cancelled(Exception):
    """Raised by a job's progress callback once someone asked the job to stop; the board marks it cancelled."""


@dataclass(eq=False)
class Job:
    """One background job. Its worker thread writes it; pages only read it (the state is written last)."""

    id: str
    kind: str  # "audit", "inference", "explain"
    key: str  # what the job computes, within its kind and workspace
    workspace: str
    title: str  # "the audit", "inference": names the job in messages
    owner: str | None = None  # user id of who started it, when it belongs to one user
    unit: str | None = None  # what done/total count ("images", "maps"), shown with the measured rate
    state: str = QUEUED
    fraction: float = 0.0
    message: str = ""
    done: float | None = None
    total: float | None = None
    started: float = 0.0
    finished: float | None = None
    result: Any = None
    error: str | None = None
    first_mark: tuple[float, float] | None = None  # (time, done) of the first progress report with a count
    last_mark: tuple[float, float] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, fraction: float | None, message: str | None = None, *, done: float | None = None,
               total: float | None = None, now: float) -> None:
        """Record progress at time `now` (what a job's progress callback does, before checking for a cancel)."""
        if fraction is not None:
            self.fraction = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            self.message = str(message)
        if done is not None:
            self.done, self.total = float(done), None if total is None else float(total)
            self.last_mark = (now, float(done))
            if self.first_mark is None:  # the rate is measured from here: start-up never enters it
                self.first_mark = self.last_mark

    def rate(self) -> float | None:
        """Units per second measured between the first and the latest counted progress report (None before two
        differ)."""
        from core.train.progress import measured_rate

        if self.first_mark is None or self.last_mark is None:
            return None
        return measured_rate(self.first_mark, self.last_mark, self.total)[0]

    def seconds_left(self, now: float) -> float | None:
        """Seconds to go at the measured rate, counting down from the latest report (None while unmeasured)."""
        from core.train.progress import measured_rate

        if self.first_mark is None or self.last_mark is None or not self.total:
            return None
        return measured_rate(self.first_mark, self.last_mark, self.total, now=now)[1]

    def elapsed(self, now: float) -> float:
        return (self.finished if self.finished is not None else now) - self.started


def failure_message(exc: BaseException, job: Job) -> str:
    """What the user reads when a job fails: never a traceback."""
    if isinstance(exc, InputError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return str(storage_error(exc, job.workspace, job.title))
    return (f"{job.title[:1].upper()}{job.title[1:]} stopped on an unexpected error ({type(exc).__name__}: {exc}); "
            "the details are in the server's log.")


class JobBoard:
    """Jobs by id, for every workspace of this process. `clock` (seconds) is for tests."""

    def __init__(self, clock: Callable[[], float] = time.time, kept_s: float = FINISHED_KEPT_S):
        self._clock, self._kept_s = clock, kept_s
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, workspace, kind: str, key: str, work: Callable[[Callable[..., None]], Any], *, title: str,
              owner: str | None = None, unit: str | None = None) -> Job:
        """Run `work(progress)` in a daemon thread; while the same (workspace, kind, key) job is queued or running,
        return it instead. The work must not touch the UI: it can outlive the page that started it."""
        root = _root(workspace)
        with self._lock:
            self._forget_old()
            running = self._newest(root, kind, key)
            if running is not None and running.active:
                return running
            job = Job(uuid.uuid4().hex, kind, str(key), root, title, owner=owner, unit=unit, started=self._clock())
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), daemon=True, name=f"{kind}-{job.id[:8]}").start()
        return job

    def get(self, workspace, job_id: str | None) -> Job | None:
        """The job with this id in this workspace (a page keeps the id in its session), else None."""
        job = self._jobs.get(job_id) if job_id else None
        return job if job is not None and job.workspace == _root(workspace) else None

    def find(self, workspace, kind: str, key: str) -> Job | None:
        """The newest job of this kind and key in this workspace, running or finished, else None."""
        with self._lock:
            return self._newest(_root(workspace), kind, str(key))

    def jobs(self, workspace, kind: str | None = None, owner: str | None = None) -> list[Job]:
        """This workspace's jobs (of a kind, of an owner), newest first."""
        root = _root(workspace)
        with self._lock:
            found = [j for j in self._jobs.values() if j.workspace == root and kind in (None, j.kind)
                     and owner in (None, j.owner)]
        return sorted(found, key=lambda j: j.started, reverse=True)

    def cancel(self, workspace, job_id: str, *, actor) -> Job:
        """Ask a job to stop: its next progress report raises Cancelled. Staff only (core.store.access)."""
        from core.store.access import require

        require(actor, "cancel_job")
        job = self.get(workspace, job_id)
        if job is None:
            raise InputError(f"no background job {job_id!r} in workspace {_root(workspace)} (it may have ended "
                             "more than an hour ago)")
        job.cancel_event.set()
        return job

    def wait(self, job: Job, timeout: float = 60.0) -> Job:
        """Block until the job ends or `timeout` seconds pass (the command line and tests); returns it."""
        deadline = time.monotonic() + timeout
        while job.active and time.monotonic() < deadline:
            time.sleep(0.02)
        return job

    def _run(self, job: Job, work: Callable) -> None:
        def progress(fraction: float | None, message: str | None = None, *, done: float | None = None,
                     total: float | None = None) -> None:
            job.report(fraction, message, done=done, total=total, now=self._clock())
            if job.cancel_requested:
                raise Cancelled(job.id)

        job.state = RUNNING
        outcome: dict = {}
        try:
            if job.cancel_requested:
                raise Cancelled(job.id)
            outcome = {"state": DONE, "result": work(progress), "fraction": 1.0}
        except Cancelled:
            outcome = {"state": CANCELLED}
        except InputError as exc:
            outcome = {"state": FAILED, "error": failure_message(exc, job)}
        except Exception as exc:  # noqa: BLE001 - a worker reports every failure instead of dying unseen
            log.exception("background job %s (%s %s, workspace %s) failed", job.id, job.kind, job.key, job.workspace)
            outcome = {"state": FAILED, "error": failure_message(exc, job)}
        finally:
            state = outcome.pop("state", FAILED)
            for name, value in outcome.items():
                setattr(job, name, value)
            job.finished = self._clock()
            job.state = state  # last: a reader that sees the end sees the result with it

    def _newest(self, root: str, kind: str, key: str) -> Job | None:
        same = [j for j in self._jobs.values() if (j.workspace, j.kind, j.key) == (root, kind, key)]
        return max(same, key=lambda j: j.started, default=None)

    def _forget_old(self) -> None:
        now = self._clock()
        for job_id in [i for i, j in self._jobs.items() if j.finished is not None and now - j.finished > self._kept_s]:
            del self._jobs[job_id]


def _root(workspace) -> str:
    """The board's name of a workspace: its folder (a Workspace, a path or a string)."""
    return str(Path(workspace if isinstance(workspace, (str, os.PathLike)) else workspace.root))


BOARD = JobBoard()  # the process's board: every session of the dashboard and every thread share it
start_job, get_job, find_job, list_jobs = BOARD.start, BOARD.get, BOARD.find, BOARD.jobs
cancel_job, wait = BOARD.cancel, BOARD.wait
