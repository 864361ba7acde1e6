"""Issue 22 item 9: the explain job's time left comes from the rate the computed maps measured
(core.train.progress.measured_rate), not from elapsed time that includes start-up and cache hits."""

from __future__ import annotations

from dashboard.explain_ui import job_progress_text


def _job(**fields) -> dict:
    return {"done": 0, "total": 16, "cached": 0, "started": 1000.0, **fields}


def test_time_left_is_measured_after_start_up_and_cache_hits():
    # 60 s of start-up, 4 maps from the cache at once, then 2 computed maps 30 s apart: 30 s per map, 10 to go.
    job = _job(done=6, cached=4, first_mark=(1060.0, 1), last_mark=(1090.0, 2))
    text = job_progress_text(job, now=1090.0)
    assert text == ("Computing maps: 6/16 (4 from the cache), about 1.5 min elapsed, about 5.0 min left")


def test_time_left_counts_down_between_updates_and_is_not_the_elapsed_time():
    job = _job(done=8, first_mark=(1100.0, 1), last_mark=(1240.0, 8))  # 20 s per map, 8 to go: 160 s at 1240
    assert job_progress_text(job, now=1300.0).endswith("about 1.7 min left")  # 160 - 60 s since the last map
    # half done: elapsed-based arithmetic would repeat the elapsed time as the time left
    half = _job(done=8, first_mark=(1010.0, 1), last_mark=(1080.0, 8))
    text = job_progress_text(half, now=1300.0)
    assert "about 5.0 min elapsed" in text and "5.0 min left" not in text and text.endswith("under a second left")


def test_before_two_progress_points_it_says_it_is_measuring():
    assert job_progress_text(_job(), now=1005.0) == \
        "Computing maps: 0/16 (0 from the cache), about 5 s elapsed, measuring the rate"
    one = _job(done=1, first_mark=(1030.0, 1), last_mark=(1030.0, 1))
    assert job_progress_text(one, now=1040.0).endswith("measuring the rate")
