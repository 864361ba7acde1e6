"""Issue 22 item 8: one sign-in is enough for a reader. A formal study admits a reader signed in with their own
password account without a second (reader-code) password; a reader whose account has no password is told exactly
that, and what an admin does about it."""

from __future__ import annotations

import pandas as pd
import pytest

from core.readers import ReaderAuthError, create_study, join_study, set_reader_password
from core.store.access import READER, RESEARCHER, SHELL, Actor, set_user
from tests.apptest import open_page

CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
PAGE = "../pages/reader_study.py"


def _images(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)],
                         "path": [f"/d/img{i:03d}.png" for i in range(n)],
                         "label": [CLASSES[i % 4] for i in range(n)]})


def _formal(ws) -> str:
    return create_study(ws, "ts1", _images(), "oct-kermany", seed=2, formal=True, actor=Actor("rob", RESEARCHER))


def test_a_reader_signed_in_with_a_password_joins_a_formal_study_without_a_second_one(workspace):
    study = _formal(workspace)
    set_user(workspace, "dr-account", READER, "reader-account-pw", actor=SHELL)
    session = join_study(workspace, study, "dr-account", actor=Actor("dr-account", READER))
    assert session.reader_id == "dr-account" and not session.resumed


def test_a_reader_without_a_password_account_is_told_what_is_missing(workspace):
    study = _formal(workspace)
    set_user(workspace, "dr-sso", READER, None, actor=SHELL)  # organisation sign-on: no password checked
    with pytest.raises(ReaderAuthError, match=r"this study is formal, so it admits readers who signed in with a "
                                              r"password, and the account 'dr-sso' has none \(it signs in through "
                                              r"the organisation's sign-on\)\. An admin sets a password for the "
                                              r"account 'dr-sso' \(Home page, Users\)"):
        join_study(workspace, study, "dr-sso", actor=Actor("dr-sso", READER))
    # The rule kept: a reader password for the code (set by an admin) still admits them.
    set_reader_password(workspace, "dr-sso", "reader-code-pw")
    with pytest.raises(ReaderAuthError, match="The reader password typed is not the one set"):
        join_study(workspace, study, "dr-sso", "wrong-pw", actor=Actor("dr-sso", READER))
    assert join_study(workspace, study, "dr-sso", "reader-code-pw", actor=Actor("dr-sso", READER)).reader_id


def test_the_reading_page_asks_a_password_signed_in_reader_for_nothing_more(workspace, monkeypatch):
    from core.data import load_dataset
    from core.data.demo import ensure_demo

    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "3")
    monkeypatch.setenv("CORE_DEMO_SIZE", "48")
    demo = ensure_demo(workspace)
    test_set = load_dataset(workspace.get_dataset(demo["test_set_id"])["source"], "oct-kermany")
    study = create_study(workspace, demo["test_set_id"], test_set, "oct-kermany", subset_size=4, formal=True,
                         actor=Actor("rob", RESEARCHER))
    set_user(workspace, "dr-account", READER, "reader-account-pw", actor=SHELL)
    at = open_page(PAGE, timeout=120, role=READER, user="dr-account")
    assert "rs_password" not in [t.key for t in at.text_input]  # no second password
    at.selectbox(key="rs_study").set_value(study)
    at.button(key="rs_join").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Reader:" in m.value for m in at.markdown)


def test_an_aided_study_session_needs_no_second_password_either(workspace):
    # The aided-vs-unaided pair joins "<code> [unaided]": the account behind that code is the reader's own.
    from core.readers.aided_study import create_aided_study, join_aided
    from tests.test_readers_aided_study import _images as aided_images
    from tests.test_readers_aided_study import _predictions

    aided = create_aided_study(workspace, "ts-demo", aided_images(), "oct-kermany", _predictions(), washout_days=1.0,
                               seed=3)
    set_reader_password(workspace, "someone-else", "reader-code-pw")  # the workspace now asks every reader
    set_user(workspace, "dr-account", READER, "reader-account-pw", actor=SHELL)
    session = join_aided(workspace, aided, "dr-account", actor=Actor("dr-account", READER))
    assert session.phase == "unaided" and session.session_code == "dr-account [unaided]"
    set_user(workspace, "dr-sso", READER, None, actor=SHELL)
    with pytest.raises(ReaderAuthError, match="the account 'dr-sso' has none"):
        join_aided(workspace, aided, "dr-sso", actor=Actor("dr-sso", READER))
