"""Opening one dashboard page in AppTest, the way every page test starts, signed in as one role."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.store.access import ADMIN, Actor
from dashboard import state
from tests.conftest import APP_PATH


def signed_in_app(role: str = ADMIN, timeout: int = 180, *, user: str | None = None, **session_state) -> AppTest:
    """The app (not run yet) with a user of `role` signed in (the one place page tests sign in; the user name is
    `user`, default "test-<role>") and `session_state` seeded."""
    at = AppTest.from_file(APP_PATH, default_timeout=timeout)
    at.session_state[state.ACTOR] = Actor(user or f"test-{role}", role)
    for key, value in session_state.items():
        at.session_state[key] = value
    return at


def open_page(page: str, timeout: int = 180, role: str = ADMIN, *, user: str | None = None,
              **session_state) -> AppTest:
    """Run the app signed in as `role` (user name `user`, default "test-<role>") with `session_state` seeded,
    switch to `page` (e.g. "../pages/performance.py") and check that nothing raised."""
    at = signed_in_app(role, timeout, user=user, **session_state)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_texts(at: AppTest) -> str:
    """The words a page shows in markdown, captions and info boxes, joined (what `in` checks read)."""
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def chosen_labels(at: AppTest) -> list[str]:
    """What each picker (selectbox, multiselect) shows as chosen: its current choices' labels, as the user reads
    them (e.g. a run's name from dashboard.common.run_choice_label)."""
    return ([s.options[s.index] for s in at.selectbox if s.index is not None]
            + [label for m in at.multiselect for label in m.values])
