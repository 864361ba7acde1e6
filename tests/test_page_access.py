"""Access in the dashboard: first-start admin password, sign-in, a reload keeping the user signed in (the token in
the URL), readers refused on every page but the Reader study page, the admin's user and reader-password forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.readers import check_reader_password
from core.store import Workspace
from core.store.access import (ADMIN, MAX_FAILURES, READER, RESEARCHER, SHELL, Actor, SignInLocked,
                               create_first_admin, list_locks, list_users, set_user, sign_in)
from dashboard import state
from tests.apptest import open_page, signed_in_app
from tests.conftest import APP_PATH


def _fresh_app() -> AppTest:
    return AppTest.from_file(APP_PATH, default_timeout=120)


def test_first_start_asks_for_the_local_admin_password(workspace, monkeypatch):
    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    at = _fresh_app().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.subheader] == ["Set the local admin password"]
    assert not at.metric  # nothing of the workspace is shown before an admin exists
    at.text_input(key="first_admin_password").input("long-password")
    at.text_input(key="first_admin_again").input("other-password")
    at.button[0].click().run()
    assert any("the two passwords differ" in e.value for e in at.error) and list_users(workspace) == []
    at.text_input(key="first_admin_again").input("long-password")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list_users(workspace) == [{"user_id": "admin", "role": ADMIN, "password": True}]
    assert at.session_state[state.ACTOR] == Actor("admin", ADMIN)
    assert {m.label for m in at.metric} >= {"Datasets", "Test sets"}  # Home now renders


def test_sign_in_and_a_reload_keeps_the_reader_signed_in(workspace):
    admin = create_first_admin(workspace, "boss", "long-password")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    at = _fresh_app().run()
    assert [s.value for s in at.subheader] == []
    at.text_input(key="sign_in_name").input("rita")
    at.text_input(key="sign_in_password").input("wrong-pw")
    at.button[0].click().run()
    assert any("unknown user name or wrong password" in e.value for e in at.error)
    at.text_input(key="sign_in_password").input("reader-pw")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Reader study"  # a reader lands on the one page they may use
    token = at.query_params[state.SESSION_PARAM]
    token = token[0] if isinstance(token, list) else token
    # A reload: a new browser session that only has the URL (with its token).
    reloaded = _fresh_app()
    reloaded.query_params[state.SESSION_PARAM] = token
    reloaded.run()
    assert not reloaded.exception and reloaded.title[0].value == "Reader study"
    assert reloaded.session_state[state.ACTOR] == Actor("rita", READER)
    # A made-up token gets the sign-in form, nothing else.
    forged = _fresh_app()
    forged.query_params[state.SESSION_PARAM] = token[:-2] + "xx"
    forged.run()
    assert forged.text_input(key="sign_in_name") is not None and state.ACTOR not in forged.session_state


@pytest.mark.parametrize("page", ["performance.py", "test_sets.py", "train.py", "experts.py", "home.py"])
def test_a_reader_is_refused_on_every_other_page(seeded_workspace, page):
    at = open_page(f"../pages/{page}", role=READER, run_id=seeded_workspace["run_id"],
                   test_set_id=seeded_workspace["test_set_id"])
    assert any("Readers grade images only" in e.value for e in at.error)
    assert not at.get("plotly_chart") and not at.dataframe and not at.get("imgs") and not at.metric
    assert not at.selectbox and [b.key for b in at.button] == ["sign_out"]  # no control of that page either


def test_a_reader_grades_under_their_own_name_and_cannot_create_studies(seeded_workspace):
    at = open_page("../pages/reader_study.py", role=READER)
    assert any("Reading as" in m.value and "test-reader" in m.value for m in at.markdown)
    assert not any(t.key == "rs_reader_code" for t in at.text_input)
    assert "New study..." not in at.selectbox(key="rs_study").options
    staff = open_page("../pages/reader_study.py", role=RESEARCHER)
    assert "New study..." in staff.selectbox(key="rs_study").options


def test_only_admins_choose_the_workspace_and_manage_users(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    researcher = open_page("../pages/home.py", role=RESEARCHER)
    assert not any(t.key == "workspace_input" for t in researcher.text_input)
    assert not any(t.key == "user_name" for t in researcher.text_input)
    admin = open_page("../pages/home.py")
    admin.text_input(key="user_name").input("dr-b")
    admin.selectbox(key="user_role").set_value(RESEARCHER)
    admin.text_input(key="user_password").input("research-pw")  # 11 characters: too short for staff
    admin.button(key="FormSubmitter:add_user-Add or update user").click().run()
    assert any("needs at least 12 characters for a staff account" in e.value for e in admin.error)
    assert not any(u["user_id"] == "dr-b" for u in list_users(ws))
    admin.text_input(key="user_password").input("research-pass")
    admin.button(key="FormSubmitter:add_user-Add or update user").click().run()
    assert {"user_id": "dr-b", "role": RESEARCHER, "password": True} in list_users(ws)
    admin.text_input(key="reader_pw_code").input("R7")
    admin.text_input(key="reader_pw_value").input("reader-pw")
    admin.button(key="FormSubmitter:reader_password-Set reader password").click().run()
    assert not admin.exception and any("Password set for reader R7" in s.value for s in admin.success)
    assert check_reader_password(ws, "R7", "reader-pw")


def test_page_tests_sign_in_in_one_place(workspace):
    at = signed_in_app(RESEARCHER)
    assert at.session_state[state.ACTOR] == Actor("test-researcher", RESEARCHER)


def _sign_in_attempt(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_sign_in_form_locks_a_name_and_a_browser_after_repeated_failures(workspace):
    """Issue 21 item 5: 40 wrong passwords in 5.5 s, then the right one was accepted. Now the fifth failure locks
    the name (known or not: the message is the same) and the browser; the right password is refused while locked."""
    admin = create_first_admin(workspace, "boss", "long-password")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    at = _fresh_app().run()
    for attempt in range(1, MAX_FAILURES + 1):
        _sign_in_attempt(at, "rita", f"guess-{attempt}")
    assert any("too many failed sign-ins; sign-in is locked for 15 more minutes" in e.value for e in at.error)
    _sign_in_attempt(at, "rita", "reader-pw")  # the right password, refused while locked
    assert state.ACTOR not in at.session_state and not at.title[0].value == "Reader study"
    assert any("ask an admin to unlock it" in e.value for e in at.error)
    # A name that does not exist gets the very same messages: a lock tells nothing about who has an account.
    other = _fresh_app().run()
    for attempt in range(1, MAX_FAILURES + 1):
        _sign_in_attempt(other, f"nobody-{attempt}", "whatever-pw")  # five names from one browser
    assert any("sign-in is locked for 15 more minutes" in e.value for e in other.error)
    _sign_in_attempt(other, "boss", "long-password")  # the browser is locked, whichever name it tries
    assert state.ACTOR not in other.session_state
    assert any("sign-in is locked" in e.value for e in other.error)
    fresh = _sign_in_attempt(_fresh_app().run(), "boss", "long-password")  # another browser, an unlocked name
    assert fresh.session_state[state.ACTOR] == Actor("boss", ADMIN)


def test_an_admin_unlocks_a_locked_name_on_the_home_page(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    set_user(ws, "rita", READER, "reader-pw", actor=SHELL)
    for attempt in range(MAX_FAILURES):
        try:
            sign_in(ws, "rita", f"guess-{attempt}")
        except SignInLocked:
            break
        except Exception:  # noqa: BLE001 - the plain refusal before the lock
            pass
    with pytest.raises(SignInLocked):
        sign_in(ws, "rita", "reader-pw")
    researcher = open_page("../pages/home.py", role=RESEARCHER)
    assert not [b for b in researcher.button if b.key == "user_unlock"]
    admin = open_page("../pages/home.py")
    assert admin.selectbox(key="user_unlock_choice").value == ("account", "rita")
    admin.button(key="user_unlock").click().run()
    assert not admin.exception and list_locks(ws, actor=SHELL) == []
    assert sign_in(ws, "rita", "reader-pw") == Actor("rita", READER)


def test_the_audit_trail_page_is_for_admins_and_exports_csv(own_seeded_workspace):
    from core.store.audit_trail import read_trail

    ws = Workspace.open(own_seeded_workspace["root"])
    set_user(ws, "rita", READER, "reader-pw", actor=SHELL)
    sign_in(ws, "rita", "reader-pw")
    for role in (RESEARCHER, READER):
        # Not listed for them (dashboard.common.PAGE_ACTIONS) ...
        at = signed_in_app(role)
        at.run()
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("../pages/audit_trail.py")
        # ... and the page itself refuses them, should it be run anyway.
        page = AppTest.from_file(str(Path(__file__).parents[1] / "pages" / "audit_trail.py"), default_timeout=120)
        page.session_state[state.ACTOR] = Actor(f"test-{role}", role)
        page.run()
        assert not page.dataframe and not page.get("download_button")
        assert any("for admins only" in e.value for e in page.error), [e.value for e in page.error]
    admin = open_page("../pages/audit_trail.py")
    assert [t.value for t in admin.title] == ["Audit trail"]
    shown = next(d.value for d in admin.dataframe if "action" in d.value.columns)
    assert {"sign_in", "user_saved"} <= set(shown["action"])
    assert list(shown.columns) == ["seq", "time", "user", "role", "action", "target", "detail"]
    admin.selectbox(key="audit_action").set_value("sign_in").run()
    shown = next(d.value for d in admin.dataframe if "action" in d.value.columns)
    assert set(shown["action"]) == {"sign_in"} and "rita" in set(shown["user"])
    assert len(shown) == len(read_trail(ws, actor=SHELL, action="sign_in"))
    assert admin.get("download_button")  # the CSV of what is shown
