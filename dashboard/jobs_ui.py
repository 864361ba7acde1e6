"""The one view of a background job (core.jobs: audit, inference, explanation maps): its progress bar with the
message, measured rate, elapsed time and time left, polled every second with a Stop button; then the outcome (an
error box for a failure, a note for a stop). The job's result is the page's to show; nothing here computes it."""

from __future__ import annotations

import time

import streamlit as st

from core.jobs import CANCELLED, FAILED, Job, cancel_job
from core.store.access import allowed
from dashboard.access_ui import current_actor
from dashboard.widgets import plain, show_error


def duration(seconds: float) -> str:
    """'under a second', 'about 40 s', 'about 3.5 min', 'about 1.2 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.1f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def progress_text(job: Job, now: float) -> str:
    """'Running the model: 64 / 160 images (8.0 images/s), about 25 s elapsed, about 11 s left': the job's message,
    the rate its counted progress measured (core.jobs.Job.rate: start-up and cache hits never enter it), and the time
    left counting down between reports; 'measuring the rate' until two reports differ, 'almost done' once the
    estimate has run out."""
    text = job.message or f"Starting {job.title}"
    rate = job.rate()
    if rate is not None and job.unit:
        text += f" ({rate:,.1f} {job.unit}/s)" if rate >= 1 else f" ({rate * 60:,.1f} {job.unit}/min)"
    text += f", {duration(job.elapsed(now))} elapsed"
    if job.total is None or job.fraction >= 1.0:
        return text
    left = job.seconds_left(now)
    if left is None:
        return text + ", measuring the rate"
    return text + (f", {duration(left)} left" if left >= 1 else ", almost done")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def watch_job(job: Job, key: str) -> None:
    """A running job's progress and Stop button, polled every second; the whole page reruns when it ends, so it
    shows the result (or the error) and stops polling."""
    @st.fragment(run_every=1)
    def watch():
        if not job.active:
            st.rerun()
            return
        st.progress(job.fraction, text=progress_text(job, time.time()))
        if job.cancel_requested:
            st.caption("Stopping after the current step...")
        elif allowed(current_actor(), "cancel_job") and st.button("Stop", key=f"{key}_stop", icon=":material/stop:"):
            cancel_job(job.workspace, job.id, actor=current_actor())
            st.caption("Stopping after the current step...")

    watch()


def job_panel(job: Job | None, *, key: str, failed: str) -> str | None:
    """Show a job as it stands: running -> `watch_job`; failed -> the headline `failed` and the job's message in an
    error box; stopped -> a note with how far it got. Returns its state ("done" shows nothing: the page shows the
    result), None without a job."""
    if job is None:
        return None
    if job.active:
        watch_job(job, key)
    elif job.state == FAILED:
        show_error(failed, job.error or "unknown error")
    elif job.state == CANCELLED:
        st.info(f"{_capitalised(job.title)} was stopped"
                + (f" at: {plain(job.message)}." if job.message else "."), icon=":material/stop_circle:")
    return "running" if job.active else job.state
