"""The one background-job board (core.jobs) and its one view (dashboard.jobs_ui): progress, a failure's message
(never a traceback), cooperative cancel, two jobs side by side, finding a job again after a page reload, and the
progress line's measured rate and time left (issue 22 item 9: start-up and cache hits never enter the rate)."""

from __future__ import annotations

import errno
import logging
import threading

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import InputError
from core.jobs import CANCELLED, DONE, FAILED, Job, JobBoard, cancel_job, find_job, get_job, start_job, wait
from core.store.access import READER, RESEARCHER, AccessDenied, Actor
from dashboard.jobs_ui import progress_text

STAFF = Actor("ana", RESEARCHER)


def _gated(gate: threading.Event, steps: int = 4):
    """Work that reports each step and waits at the gate after the first, so a test sees it mid-way."""
    def work(progress):
        for i in range(steps):
            progress(i / steps, f"step {i + 1} of {steps}", done=i, total=steps)
            if i == 0:
                assert gate.wait(10)
        return {"steps": steps}

    return work


def test_a_job_reports_progress_then_its_result(tmp_path):
    gate = threading.Event()
    job = start_job(tmp_path, "test", "progress", _gated(gate), title="the test job", unit="steps")
    while job.message != "step 1 of 4":
        threading.Event().wait(0.01)
    assert job.active and job.fraction == 0.0 and job.done == 0 and job.total == 4
    gate.set()
    wait(job, 10)
    assert job.state == DONE and job.result == {"steps": 4} and job.fraction == 1.0 and job.error is None
    assert job.finished >= job.started and job.message == "step 4 of 4"


def test_a_failure_gives_a_message_never_a_traceback(tmp_path, caplog):
    def bad_input(progress):
        raise InputError("test set 'clinic': 3 images could not be decoded")

    def bug(progress):
        progress(0.5, "half way")
        return {}["missing"]

    def full_disk(progress):
        raise OSError(errno.ENOSPC, "No space left on device")

    job = wait(start_job(tmp_path, "test", "input", bad_input, title="inference"), 10)
    assert job.state == FAILED and job.error == "test set 'clinic': 3 images could not be decoded"
    with caplog.at_level(logging.ERROR, logger="core.jobs"):
        job = wait(start_job(tmp_path, "test", "bug", bug, title="the audit"), 10)
    assert job.state == FAILED and job.error.startswith("The audit stopped on an unexpected error (KeyError: ")
    assert "server's log" in job.error and "Traceback" not in job.error
    assert any(r.exc_info and job.id in r.getMessage() for r in caplog.records)  # the traceback: in the log
    job = wait(start_job(tmp_path, "test", "disk", full_disk, title="inference"), 10)
    assert job.state == FAILED and "disk (or your quota) is full" in job.error and str(tmp_path) in job.error


def test_cancel_stops_the_job_at_its_next_progress_report_and_needs_staff(tmp_path):
    gate = threading.Event()
    job = start_job(tmp_path, "test", "cancel", _gated(gate), title="the test job")
    while job.message != "step 1 of 4":
        threading.Event().wait(0.01)
    with pytest.raises(AccessDenied):
        cancel_job(tmp_path, job.id, actor=Actor("rita", READER))
    assert not job.cancel_requested
    assert cancel_job(tmp_path, job.id, actor=STAFF) is job and job.cancel_requested
    gate.set()
    wait(job, 10)
    assert job.state == CANCELLED and job.result is None and job.message == "step 2 of 4"  # stopped at step 2
    with pytest.raises(InputError, match="no background job"):
        cancel_job(tmp_path / "elsewhere", job.id, actor=STAFF)


def test_two_jobs_run_side_by_side_and_the_same_one_is_joined_not_started_twice(tmp_path):
    gates = threading.Event(), threading.Event()
    first = start_job(tmp_path, "test", "a", _gated(gates[0]), title="job a")
    second = start_job(tmp_path, "test", "b", _gated(gates[1]), title="job b")
    assert first is not second and first.id != second.id
    assert start_job(tmp_path, "test", "a", _gated(gates[0]), title="job a") is first  # running: joined
    gates[1].set()
    wait(second, 10)
    assert second.state == DONE and first.active  # one ending leaves the other running
    gates[0].set()
    wait(first, 10)
    again = start_job(tmp_path, "test", "a", _gated(gates[0]), title="job a")  # finished: a new one starts
    assert again is not first and wait(again, 10).state == DONE


def test_a_reload_finds_the_job_by_its_stored_id_or_by_kind_and_key(tmp_path):
    """A page reload is a new session: the board is the process's, so the id kept in session state (or the job's
    kind and key) finds the same job; another workspace never sees it."""
    gate = threading.Event()
    job = start_job(tmp_path / "ws", "test", "reload", _gated(gate), title="the test job", owner="ana")
    stored = job.id  # what the page keeps in st.session_state
    assert get_job(tmp_path / "ws", stored) is job and find_job(tmp_path / "ws", "test", "reload") is job
    assert get_job(tmp_path / "other", stored) is None and find_job(tmp_path / "other", "test", "reload") is None
    gate.set()
    wait(job, 10)
    assert get_job(str(tmp_path / "ws"), stored) is job and job.state == DONE and job.owner == "ana"


def test_finished_jobs_are_forgotten_after_an_hour():
    now = [1000.0]
    board = JobBoard(clock=lambda: now[0], kept_s=3600)
    old = board.wait(board.start("/ws", "test", "old", lambda progress: 1, title="old"), 10)
    now[0] += 3601
    board.start("/ws", "test", "new", lambda progress: 2, title="new")
    assert board.get("/ws", old.id) is None and board.find("/ws", "test", "old") is None


# -- the progress line -----------------------------------------------------------------------------------------
def _job(**fields) -> Job:
    return Job("id", "test", "key", "/ws", "the test job", started=1000.0, **fields)


def test_time_left_is_measured_after_start_up_and_cache_hits():
    # Explanation maps: 60 s of start-up, 4 maps from the cache at once, then 2 computed maps 30 s apart: 30 s per
    # map, 10 to go. Cache hits are not counted (done - cached of total - cached), so they never speed up the rate.
    job = _job(unit="maps")
    job.report(0.0, "Computing maps: 0/16 (0 from the cache)", done=0, total=16, now=1060.0)
    job.report(4 / 16, "Computing maps: 4/16 (4 from the cache)", done=0, total=12, now=1060.0)
    job.report(5 / 16, "Computing maps: 5/16 (4 from the cache)", done=1, total=12, now=1090.0)
    job.report(6 / 16, "Computing maps: 6/16 (4 from the cache)", done=2, total=12, now=1120.0)
    assert progress_text(job, now=1120.0) == ("Computing maps: 6/16 (4 from the cache) (2.0 maps/min), about 2.0 min "
                                              "elapsed, about 5.0 min left")


def test_time_left_counts_down_between_updates_and_is_not_the_elapsed_time():
    # Inference. The reported defect: stuck at 64/160, the estimate grew from 23 s to 51 s (elapsed since the start,
    # model loading included, over images done). Measured per batch it counts down: 32 images done 4 s after the
    # first batch of 32: 8 images/s, 96 left = 12 s, less the time since that batch.
    job = _job(unit="images")
    job.report(0.0, "Loading the model and the test set", now=1000.0)
    assert progress_text(job, now=1003.0) == "Loading the model and the test set, about 3 s elapsed"
    job.report(0.2, "Running the model: 32 / 160 images", done=32, total=160, now=1100.0)
    assert progress_text(job, now=1101.0).endswith(", measuring the rate")  # one batch: no rate yet
    job.report(0.4, "Running the model: 64 / 160 images", done=64, total=160, now=1104.0)
    text = progress_text(job, now=1105.0)
    assert text == "Running the model: 64 / 160 images (8.0 images/s), about 1.8 min elapsed, about 11 s left"
    assert progress_text(job, now=1115.0).endswith("about 1 s left")
    assert progress_text(job, now=1130.0).endswith(", almost done")  # the estimate ran out: never "about 0 s"
    job.fraction = 1.0
    assert progress_text(job, now=1131.0).endswith("elapsed")  # nothing left to estimate


# -- the one view ------------------------------------------------------------------------------------------------
def _panel(job_id: str, root: str) -> None:
    from core.jobs import get_job
    from dashboard.jobs_ui import job_panel

    job_panel(get_job(root, job_id), key="test", failed="The test job failed.")


def _view(job: Job, actor: Actor) -> AppTest:
    from dashboard import state

    at = AppTest.from_function(_panel, args=(job.id, job.workspace), default_timeout=30)
    at.session_state[state.ACTOR] = actor
    return at.run()


def test_the_view_shows_progress_a_stop_button_the_stop_and_a_failure(tmp_path):
    gate = threading.Event()
    job = start_job(tmp_path, "test", "view", _gated(gate), title="the test job")
    while job.message != "step 1 of 4":
        threading.Event().wait(0.01)
    at = _view(job, STAFF)
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("step 1 of 4, ") and "measuring the rate" in bar.proto.text
    assert "test_stop" not in [b.key for b in _view(job, Actor("rita", READER)).button]  # core says who may stop
    at.button(key="test_stop").click().run()
    assert job.cancel_requested
    gate.set()
    wait(job, 10)
    at.run()
    assert [i.value for i in at.info] == ["The test job was stopped at: step 2 of 4."] and not at.get("progress")

    def broken(progress):
        raise RuntimeError("boom")

    failed = wait(start_job(tmp_path, "test", "broken", broken, title="the test job"), 10)
    at = _view(failed, STAFF)
    assert [e.value for e in at.error] == ["The test job failed."]
    assert [c.value for c in at.code] == [failed.error] and "Traceback" not in failed.error
