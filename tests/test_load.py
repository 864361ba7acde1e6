"""Short load test (CI): readers grading and a researcher moving the threshold and editing penalties at once, on the
real server in headless Chromium. Asserts storage only (never timings): every answer the page acknowledged is in the
registry exactly once with the class clicked, and nothing was stored that the page did not acknowledge.
The full form with figures is benchmarks/bench_load.py."""

from __future__ import annotations

import pytest

from tests._load import LoadPlan, run_load
from tests._server import require_chromium

pytestmark = pytest.mark.browser


def test_concurrent_readers_and_researcher_lose_no_answer(tmp_path):
    require_chromium("the load test")
    result = run_load(tmp_path / "workspace", LoadPlan(readers=2, researchers=1, duration_s=15),
                      tmp_path / "server.log")
    print(result.summary())
    assert not result.page_errors, result.page_errors
    assert result.acknowledged, "no answer was acknowledged"
    assert not result.missing, [vars(a) for a in result.missing]
    assert not result.duplicated, result.duplicated
    assert result.unacknowledged_rows == 0
    assert all(a.stored is not None for a in result.acknowledged)
    # The researcher starts on the Penalties page, so at least one edit is made however slow the machine; with one
    # researcher, each edit must be the matrix the workspace has in use right after it.
    assert result.researcher_steps.get("penalty edit", 0) >= 1
    assert result.researcher_steps.get("penalty edit in use", 0) == result.researcher_steps["penalty edit"]
