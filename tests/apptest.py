"""Opening one dashboard page in AppTest, the way every page test starts."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import APP_PATH


def open_page(page: str, timeout: int = 180, **session_state) -> AppTest:
    """Run the app with `session_state` seeded, switch to `page` (e.g. "../pages/performance.py") and check
    that nothing raised."""
    at = AppTest.from_file(APP_PATH, default_timeout=timeout)
    for key, value in session_state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at
