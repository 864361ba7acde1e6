"""Access in the dashboard: first-start admin password, sign-in, a reload keeping the user signed in (the token in
the URL), readers refused on every page but the Reader study page, the admin's user and reader-password forms."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.readers import check_reader_password
from core.store import Workspace
from core.store.access import ADMIN, READER, RESEARCHER, Actor, create_first_admin, list_users, set_user
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
    admin.text_input(key="user_password").input("research-pw")
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
