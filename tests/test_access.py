"""Roles and permissions in the core: a reader calling the functions pages call directly is refused; users,
first-start admin, session tokens that survive a reload, data roots, formal studies needing reader passwords."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from core.data.ingest import ingest_upload, register_folder, register_split
from core.readers import create_study, join_study, load_readings, set_reader_password, store_readings
from core.readers.aided_study import create_aided_study
from core.store.access import (ADMIN, PERMISSIONS, READER, RESEARCHER, SHELL, AccessDenied, Actor,
                               check_server_folder, create_first_admin, end_session, has_users, list_users,
                               open_workspace_as, remove_user, require, resume_session, set_user, sign_in,
                               start_session)
from core.train import cancel_run, launch_run
from tests._data_files import image_folder

READER_ACTOR = Actor("rita", READER)
RESEARCHER_ACTOR = Actor("rob", RESEARCHER)
CLASSES = ["CNV", "DME", "DRUSEN", "NORMAL"]


def _images(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)], "path": [f"/d/img{i:03d}.png" for i in range(n)],
                         "label": [CLASSES[i % 4] for i in range(n)]})


def test_every_action_has_roles_and_the_reader_only_grades():
    assert {a for a, roles in PERMISSIONS.items() if READER in roles} == {"grade"}
    assert {a for a, roles in PERMISSIONS.items() if RESEARCHER not in roles} == {
        "delete_data", "manage_users", "choose_workspace", "read_audit", "grade"}
    assert PERMISSIONS["grade"] == {READER}  # staff never grade as a reader (issue 21 item 6)
    with pytest.raises(AccessDenied, match="start run needs the role admin or researcher; 'rita' \\(role reader\\)"):
        require(READER_ACTOR, "start_run")
    with pytest.raises(AccessDenied, match="nobody signed in"):
        require(None, "grade")
    require(RESEARCHER_ACTOR, "start_run")  # allowed: returns quietly


def test_a_reader_calling_the_core_directly_is_refused(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path))
    folder = image_folder(tmp_path / "data", {"NORMAL": 2, "CNV": 2})
    readings = load_readings(pd.DataFrame({"reader_id": ["r1"], "image_id": ["img000"], "label": ["CNV"]}),
                             "oct-kermany")
    calls = {
        "start_run": lambda: launch_run({"backbone": "test_resnet", "task": "oct-kermany", "dataset_id": "x"},
                                        workspace, actor=READER_ACTOR),
        "cancel_run": lambda: cancel_run("run-x", workspace, actor=READER_ACTOR),
        "register_folder": lambda: register_folder(workspace, folder, actor=READER_ACTOR),
        "upload": lambda: ingest_upload(workspace, "x.zip", b"PK", actor=READER_ACTOR),
        "split": lambda: register_split(workspace, "ds-x", actor=READER_ACTOR),
        "readings": lambda: store_readings(workspace, "ts1", readings, "r.csv", replace=True, actor=READER_ACTOR),
        "study": lambda: create_study(workspace, "ts1", _images(), "oct-kermany", actor=READER_ACTOR),
        "aided": lambda: create_aided_study(workspace, "ts1", _images(), "oct-kermany", pd.DataFrame(),
                                            actor=READER_ACTOR),
        "workspace": lambda: open_workspace_as(tmp_path / "elsewhere", actor=READER_ACTOR),
        "users": lambda: set_user(workspace, "eve", ADMIN, "secret-pw", actor=READER_ACTOR),
    }
    for name, call in calls.items():
        with pytest.raises(AccessDenied, match="role reader"):
            call()
    # Nothing was written by any refused call.
    assert workspace.list_runs() == [] and workspace.list_datasets() == []
    assert not (tmp_path / "elsewhere").exists() and list_users(workspace) == []
    # The same calls as a researcher go through (here: a study and readings).
    study_id = create_study(workspace, "ts1", _images(), "oct-kermany", actor=RESEARCHER_ACTOR)
    assert study_id and store_readings(workspace, "ts1", readings, "r.csv", actor=RESEARCHER_ACTOR) == 1
    with pytest.raises(AccessDenied, match="choose workspace needs the role admin"):
        open_workspace_as(tmp_path / "elsewhere", actor=RESEARCHER_ACTOR)


def test_first_start_admin_then_users_and_sign_in(workspace):
    assert not has_users(workspace)
    admin = create_first_admin(workspace, "boss", "long-password")
    assert admin == Actor("boss", ADMIN) and has_users(workspace)
    with pytest.raises(AccessDenied, match="an admin already exists"):
        create_first_admin(workspace, "intruder", "another-pw")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    set_user(workspace, "sso@example.org", RESEARCHER, None, actor=admin)  # organisation sign-on only
    assert sign_in(workspace, "rita", "reader-pw") == Actor("rita", READER)
    for name, password in [("rita", "wrong-pw"), ("nobody", "reader-pw"), ("sso@example.org", "")]:
        with pytest.raises(AccessDenied, match="unknown user name or wrong password"):
            sign_in(workspace, name, password)
    with pytest.raises(AccessDenied, match="manage users"):
        set_user(workspace, "rita", ADMIN, "reader-pw", actor=Actor("rita", READER))
    with pytest.raises(ValueError, match="cannot take the admin role from yourself"):
        set_user(workspace, "boss", READER, None, actor=admin)
    stored = {u["user_id"]: (u["role"], u["password"]) for u in list_users(workspace)}
    assert stored == {"boss": (ADMIN, True), "rita": (READER, True), "sso@example.org": (RESEARCHER, False)}
    assert remove_user(workspace, "rita", actor=admin)
    with pytest.raises(AccessDenied):
        sign_in(workspace, "rita", "reader-pw")


def test_a_session_token_survives_a_reload_and_expires(workspace):
    admin = create_first_admin(workspace, "boss", "long-password")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    token = start_session(workspace, Actor("rita", READER))
    # A reload is a new browser session holding only the token: it gets the same user back.
    assert resume_session(workspace, token) == Actor("rita", READER)
    assert resume_session(workspace, token + "x") is None and resume_session(workspace, None) is None
    with workspace.connect() as con:  # only the token's hash is stored
        assert token not in {r[0] for r in con.execute("SELECT token_hash FROM user_sessions")}
    # A role change applies to the live session at once; signing out ends it.
    set_user(workspace, "rita", RESEARCHER, None, actor=admin)
    assert resume_session(workspace, token) == Actor("rita", RESEARCHER)
    end_session(workspace, token)
    assert resume_session(workspace, token) is None
    short = start_session(workspace, admin, seconds=0.05)
    time.sleep(0.1)
    assert resume_session(workspace, short) is None


def test_server_folders_only_under_the_data_roots(workspace, tmp_path, monkeypatch):
    allowed_root = tmp_path / "allowed"
    inside = image_folder(allowed_root / "clinic", {"NORMAL": 2, "CNV": 2})
    outside = image_folder(tmp_path / "private", {"NORMAL": 2, "CNV": 2})
    monkeypatch.setenv("CORE_DATA_ROOTS", str(allowed_root))
    admin = Actor("boss", ADMIN)
    with pytest.raises(AccessDenied, match=f"folder {outside}: outside the folders this server allows"):
        register_folder(workspace, outside, actor=admin)
    # A symlink inside a root that points out of it is refused too.
    os.symlink(outside, allowed_root / "sneaky")
    with pytest.raises(AccessDenied, match="outside the folders"):
        register_folder(workspace, allowed_root / "sneaky", actor=admin)
    with pytest.raises(AccessDenied, match="outside the folders"):
        register_folder(workspace, f"{allowed_root}/../private", actor=admin)
    assert workspace.list_datasets() == []
    assert register_folder(workspace, inside, actor=admin).record["n_images"] == 4
    # The workspace setting adds roots; the server's own shell (the command line) may register any folder.
    workspace.set_setting("data_roots", [str(tmp_path / "private")])
    assert check_server_folder(workspace, outside, actor=admin) == outside.resolve()
    # A dashboard user who calls themself like the shell is still a dashboard user.
    monkeypatch.delenv("CORE_DATA_ROOTS")
    with pytest.raises(AccessDenied, match="outside the folders"):
        check_server_folder(workspace, tmp_path / "anywhere", actor=Actor(SHELL.user_id, ADMIN))
    assert check_server_folder(workspace, tmp_path / "anywhere", actor=SHELL) == (tmp_path / "anywhere").resolve()


def test_a_formal_study_requires_reader_passwords(workspace):
    informal = create_study(workspace, "ts1", _images(), "oct-kermany", seed=1, actor=RESEARCHER_ACTOR)
    formal = create_study(workspace, "ts1", _images(), "oct-kermany", seed=2, formal=True, actor=RESEARCHER_ACTOR)
    assert join_study(workspace, informal, "anyone").reader_id == "anyone"  # no passwords in this workspace
    with pytest.raises(PermissionError, match="'anyone': wrong password, or no password set.*this study is formal"):
        join_study(workspace, formal, "anyone")
    set_reader_password(workspace, "dr-a", "reader-pw")
    with pytest.raises(PermissionError, match="this study is formal"):
        join_study(workspace, formal, "dr-a", "wrong-pw")
    assert join_study(workspace, formal, "dr-a", "reader-pw").reader_id == "dr-a"


def test_a_reader_account_takes_only_a_name_a_study_would_take(workspace):
    """A signed-in reader grades under their user name: an account whose name no study accepts is refused when it
    is made, not at the first study (a 70-character or SIMULATED- name could sign in and never grade)."""
    from core.errors import InputError
    from core.store.access import READER, RESEARCHER, SHELL, list_users, set_user

    for name in ("x" * 70, "SIMULATED-dr-a"):
        with pytest.raises(InputError, match="reader code"):
            set_user(workspace, name, READER, "long-enough-pw", actor=SHELL)
    set_user(workspace, "x" * 70, RESEARCHER, "long-enough-pw", actor=SHELL)  # staff names are not reader codes
    assert [u["user_id"] for u in list_users(workspace)] == ["x" * 70]


# -- issue 21 items 5 and 7: sign-in throttling, password lengths, the audit trail -------------------------------
def _fail(ws, name, times, client=None, now=None):
    from core.store.access import SignInLocked

    outcomes = []
    for _ in range(times):
        try:
            sign_in(ws, name, "not-the-password", client=client, now=now)
        except SignInLocked:
            outcomes.append("locked")
        except AccessDenied:
            outcomes.append("refused")
    return outcomes


def test_sign_in_locks_an_account_after_five_failures_for_a_growing_time(workspace):
    from core.store.access import LOCK_SECONDS, MAX_FAILURES, SignInLocked, list_locks

    admin = create_first_admin(workspace, "boss", "long-password")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    t0 = time.time()
    assert _fail(workspace, "rita", MAX_FAILURES, now=t0) == ["refused"] * (MAX_FAILURES - 1) + ["locked"]
    with pytest.raises(SignInLocked, match="sign-in is locked for 15 more minutes.*ask an admin to unlock it"):
        sign_in(workspace, "rita", "reader-pw", now=t0 + 1)  # the right password is refused while locked
    # Case does not get round it; an unknown name is locked with the same words (nothing tells who exists).
    with pytest.raises(SignInLocked):
        sign_in(workspace, "RITA", "reader-pw", now=t0 + 2)
    assert _fail(workspace, "no-such-user", MAX_FAILURES, now=t0)[-1] == "locked"
    with pytest.raises(SignInLocked, match="sign-in is locked for 15 more minutes"):
        sign_in(workspace, "no-such-user", "x", now=t0 + 1)
    # After the lock the right password works; the next lock of the same name lasts twice as long.
    assert sign_in(workspace, "rita", "reader-pw", now=t0 + LOCK_SECONDS + 1) == Actor("rita", READER)
    t1 = t0 + LOCK_SECONDS + 10
    assert _fail(workspace, "rita", MAX_FAILURES, now=t1)[-1] == "locked"
    with pytest.raises(SignInLocked, match="locked for 15 more minutes"):  # success cleared the strikes
        sign_in(workspace, "rita", "reader-pw", now=t1)
    t2 = t1 + LOCK_SECONDS + 10
    assert _fail(workspace, "rita", MAX_FAILURES, now=t2)[-1] == "locked"  # no success in between: doubled
    with pytest.raises(SignInLocked, match="locked for 30 more minutes"):
        sign_in(workspace, "rita", "reader-pw", now=t2)
    assert {(lock["kind"], lock["key"]) for lock in list_locks(workspace, actor=admin, now=t2)} >= {
        ("account", "rita")}


def test_sign_in_locks_a_client_that_tries_many_names(workspace):
    from core.store.access import MAX_FAILURES, SignInLocked

    create_first_admin(workspace, "boss", "long-password")
    names = [f"guess-{i}" for i in range(MAX_FAILURES)]
    outcomes = [_fail(workspace, name, 1, client="ip 10.0.0.9")[0] for name in names]
    assert outcomes[-1] == "locked"
    with pytest.raises(SignInLocked):  # the client is locked, whichever name, even a right password
        sign_in(workspace, "boss", "long-password", client="ip 10.0.0.9")
    assert sign_in(workspace, "boss", "long-password", client="ip 10.0.0.10") == Actor("boss", ADMIN)


def test_an_admin_unlocks_from_core_and_the_command_line(workspace, capsys):
    from core.__main__ import main
    from core.store.access import MAX_FAILURES, SignInLocked, list_locks, unlock

    admin = create_first_admin(workspace, "boss", "long-password")
    set_user(workspace, "rita", READER, "reader-pw", actor=admin)
    set_user(workspace, "rob", RESEARCHER, "research-pass", actor=admin)
    _fail(workspace, "rita", MAX_FAILURES, client="ip 10.0.0.7")
    with pytest.raises(AccessDenied, match="manage users needs the role admin"):
        unlock(workspace, "rita", actor=Actor("rob", RESEARCHER))
    with pytest.raises(AccessDenied, match="manage users"):
        list_locks(workspace, actor=Actor("rob", RESEARCHER))
    assert unlock(workspace, "Rita", actor=admin)  # the name as typed, case ignored
    with pytest.raises(SignInLocked):  # the client is still locked
        sign_in(workspace, "rita", "reader-pw", client="ip 10.0.0.7")
    assert main(["users", "--workspace", str(workspace.root), "list"]) == 0
    assert "client ip 10.0.0.7" in capsys.readouterr().out
    assert main(["users", "--workspace", str(workspace.root), "unlock", "--client", "ip 10.0.0.7"]) == 0
    assert "unlocked ip 10.0.0.7" in capsys.readouterr().out
    assert sign_in(workspace, "rita", "reader-pw", client="ip 10.0.0.7") == Actor("rita", READER)
    assert list_locks(workspace, actor=admin) == []


def test_staff_passwords_need_twelve_characters_readers_eight(workspace):
    from core.errors import InputError

    with pytest.raises(InputError, match="needs at least 12 characters for a staff account"):
        create_first_admin(workspace, "boss", "eleven-char")
    admin = create_first_admin(workspace, "boss", "twelve-chars")
    for role in (ADMIN, RESEARCHER):
        with pytest.raises(InputError, match="at least 12 characters"):
            set_user(workspace, "staff", role, "x" * 11, actor=admin)
        set_user(workspace, "staff", role, "x" * 12, actor=admin)
    with pytest.raises(InputError, match="needs at least 8 characters for a reader"):
        set_user(workspace, "rita", READER, "x" * 7, actor=admin)
    set_user(workspace, "rita", READER, "x" * 8, actor=admin)
    with pytest.raises(InputError, match="at least 8 characters"):
        set_reader_password(workspace, "dr-a", "x" * 7)
    set_reader_password(workspace, "dr-a", "x" * 8)


def test_the_audit_trail_records_sign_ins_and_lifecycle_and_cannot_be_edited(workspace):
    import sqlite3

    from core.readers.lifecycle import rename_study
    from core.store.audit_trail import APPEND_ONLY, read_trail, trail_csv

    admin = create_first_admin(workspace, "boss", "long-password")
    sign_in(workspace, "boss", "long-password", client="ip 10.1.1.1")
    _fail(workspace, "=cmd|calc", 1)  # a name typed on the sign-in form that a spreadsheet would run
    study_id = create_study(workspace, "ts1", _images(), "oct-kermany", actor=RESEARCHER_ACTOR)
    rename_study(workspace, study_id, "Pilot 2", actor=RESEARCHER_ACTOR)
    trail = read_trail(workspace, actor=admin)
    assert list(trail["action"]) == ["renamed", "study_created", "sign_in_failed", "sign_in", "user_saved"]
    assert list(trail["user"]) == ["rob", "rob", "=cmd|calc", "boss", "boss"]
    assert trail["target"].iloc[0] == f"reader study {study_id}" and '"to": "Pilot 2"' in trail["detail"].iloc[0]
    assert '"client": "ip 10.1.1.1"' in trail["detail"].iloc[3] and trail["time"].str.match(r"\d{4}-\d\d-\d\dT").all()
    assert list(read_trail(workspace, actor=admin, user="rob")["action"]) == ["renamed", "study_created"]
    assert read_trail(workspace, actor=admin, since=time.time() + 60).empty
    assert b"'=cmd|calc" in trail_csv(workspace, actor=admin)  # through the one CSV writer: defused
    for who in (RESEARCHER_ACTOR, READER_ACTOR):
        with pytest.raises(AccessDenied, match="read audit needs the role admin"):
            read_trail(workspace, actor=who)
    # Append-only even for a statement typed straight into the registry.
    with workspace.connect() as con:
        for statement in ("UPDATE audit_trail SET user='someone else'", "DELETE FROM audit_trail",
                          "DELETE FROM audit_trail WHERE action='sign_in_failed'"):
            with pytest.raises(sqlite3.DatabaseError, match=APPEND_ONLY):
                con.execute(statement)
    assert len(read_trail(workspace, actor=admin)) == 5
