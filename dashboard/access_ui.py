"""The sign-in gate: first-start admin password, password sign-in, organisation sign-on (st.login) when
secrets.toml has an [auth] section, a session token in the URL so a reload keeps the user signed in, and the
admin's user management. Roles and permissions themselves live in core/store/permissions.py."""

from __future__ import annotations

import secrets

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.readers.auth import remove_reader_password, set_reader_password
from core.store import Workspace
from core.store.access import (READER, ROLES, AccessDenied, Actor, allowed, create_first_admin, end_session,
                               has_users, list_locks, list_users, remove_user, resume_session, set_user, sign_in,
                               start_session, unlock, user_actor)
from core.store.passwords import MIN_PASSWORD_LENGTH, MIN_STAFF_PASSWORD_LENGTH
from dashboard import state
from dashboard.widgets import plain

ROLES_SECRET = "roles"  # optional secrets.toml table {e-mail: role} for organisation sign-on identities


def current_actor() -> Actor | None:
    return st.session_state.get(state.ACTOR)


def live_actor() -> Actor | None:
    """The signed-in actor re-checked in core (core.store.access.resume_session, about 1 ms): a sign-in token
    that was ended (signed out elsewhere, the user removed by an admin) or has expired signs this session out and
    gives None; a changed role is taken up. The gate calls it on every full run; a fragment, whose rerun skips the
    gate, calls it (`signed_in_here`, or directly in a button callback) before it stores anything. A session with no
    token (organisation sign-on: Streamlit's own cookie vouches for it) is returned as it is."""
    actor, token = current_actor(), st.session_state.get(state.SESSION_TOKEN)
    if actor is None or not token:
        return actor
    from dashboard.common import get_workspace, workspace_at

    root = st.session_state.get(state.SESSION_WORKSPACE)  # where the token lives, whichever workspace is open now
    live = resume_session(workspace_at(root) if root else get_workspace(), token)
    if live is None:
        for key in (state.ACTOR, state.SESSION_TOKEN, state.SESSION_WORKSPACE):
            st.session_state.pop(key, None)
        st.query_params.pop(state.SESSION_PARAM, None)
        return None
    if live != actor:
        st.session_state[state.ACTOR] = live
    return live


def signed_in_here() -> Actor:
    """At the start of a fragment: the live actor; a session signed out meanwhile reruns the whole app instead,
    where the gate shows the sign-in form (nothing below the call runs)."""
    actor = live_actor()
    if actor is None:
        st.rerun(scope="app")
    return actor


def reader_code() -> str | None:
    """The code the signed-in user grades under: a reader's own user name (shown), nothing typed. Staff do not
    grade (core.store.access: `grade` is the reader's alone), so for them None and nothing is shown."""
    actor = current_actor()
    if not allowed(actor, "grade"):
        return None
    st.markdown(f"Reading as **{plain(actor.user_id)}**")
    return actor.user_id


def _client() -> str:
    """This browser's identity for sign-in throttling: its IP address where Streamlit sees one (not on localhost),
    else a random id kept for this browser session."""
    address = st.context.ip_address
    if isinstance(address, str) and address:  # (AppTest's stand-in runtime gives a mock object: not an address)
        return f"ip {address}"
    if state.CLIENT_ID not in st.session_state:
        st.session_state[state.CLIENT_ID] = secrets.token_hex(8)
    return f"session {st.session_state[state.CLIENT_ID]}"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, OSError):
        return False
    except Exception:  # noqa: BLE001 - a malformed secrets.toml: password sign-in still works
        return False


def _oidc_actor(ws: Workspace) -> Actor | None:
    email = str(st.user.get("email") or "").strip()
    if not email:
        return None
    known = user_actor(ws, email)
    if known is not None:
        return known
    try:
        mapping = {str(k).lower(): str(v) for k, v in st.secrets.get(ROLES_SECRET, {}).items()}
    except Exception:  # noqa: BLE001
        mapping = {}
    role = mapping.get(email.lower())
    return Actor(email, role) if role in ROLES else None


def _remember(ws: Workspace, actor: Actor) -> None:
    token = start_session(ws, actor)
    st.session_state[state.ACTOR] = actor
    st.session_state[state.SESSION_TOKEN] = token
    st.session_state[state.SESSION_WORKSPACE] = str(ws.root)
    st.query_params[state.SESSION_PARAM] = token


def sign_out(ws: Workspace) -> None:
    end_session(ws, st.session_state.pop(state.SESSION_TOKEN, None))
    st.session_state.pop(state.ACTOR, None)
    st.session_state.pop(state.SESSION_WORKSPACE, None)
    st.query_params.pop(state.SESSION_PARAM, None)


def sign_in_gate(ws: Workspace) -> Actor:
    """The signed-in actor; otherwise the sign-in (or first-start) form is shown and the script stops."""
    actor = live_actor()  # a session whose token was ended or expired is signed out here
    if actor is None:
        actor = resume_session(ws, st.query_params.get(state.SESSION_PARAM))
        if actor is not None:  # a reload: the browser kept the URL with its token
            st.session_state[state.ACTOR] = actor
            st.session_state[state.SESSION_TOKEN] = st.query_params.get(state.SESSION_PARAM)
            st.session_state[state.SESSION_WORKSPACE] = str(ws.root)
    if actor is None and _oidc_configured() and st.user.is_logged_in:
        actor = _oidc_actor(ws)
        if actor is None:
            st.error(f"{plain(st.user.get('email') or 'This identity')} has no role in this workspace; "
                     f"ask an admin to add your e-mail address.")
            st.button("Sign out", on_click=st.logout)
            st.stop()
        st.session_state[state.ACTOR] = actor
    if actor is not None:
        token = st.session_state.get(state.SESSION_TOKEN)
        if token and st.query_params.get(state.SESSION_PARAM) != token:
            st.query_params[state.SESSION_PARAM] = token  # page switches drop query params
        return actor
    _sign_in_forms(ws)
    st.stop()


def _sign_in_forms(ws: Workspace) -> None:
    # One block: the first page after sign-in replaces it with its first element, where its parts would linger,
    # greyed, while Home generates the demo.
    with st.container():
        _sign_in_form_parts(ws)


def _sign_in_form_parts(ws: Workspace) -> None:
    st.title("OpenKermany")
    if not has_users(ws):
        st.subheader("Set the local admin password")
        st.caption(f"First start of workspace {plain(ws.root.name or ws.root)}: the admin adds researchers and "
                   "readers. "
                   f"A password has at least {MIN_STAFF_PASSWORD_LENGTH} characters.")
        with st.form("first_admin"):
            name = st.text_input("Admin user name", value="admin", key="first_admin_name")
            password = st.text_input("Password", type="password", key="first_admin_password")
            again = st.text_input("Password again", type="password", key="first_admin_again")
            if st.form_submit_button("Create the admin account"):
                try:
                    if password != again:
                        raise InputError("the two passwords differ")
                    _remember(ws, create_first_admin(ws, name, password))
                    st.rerun()
                except (InputError, AccessDenied) as exc:
                    st.error(plain(exc))
        return
    if _oidc_configured():
        st.button("Sign in with your organisation", key="oidc_login", on_click=st.login)
        st.caption("Or with a local account:")
    with st.form("sign_in"):
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        if st.form_submit_button("Sign in"):
            try:
                _remember(ws, sign_in(ws, name, password, client=_client()))
                st.rerun()
            except AccessDenied as exc:
                st.error(plain(exc))


def signed_in_sidebar(ws: Workspace, actor: Actor) -> None:
    st.sidebar.caption(f"Signed in as **{plain(actor.user_id)}** ({actor.role})")
    if st.sidebar.button("Sign out", key="sign_out", icon=":material/logout:"):
        sign_out(ws)
        if _oidc_configured() and st.user.is_logged_in:
            st.logout()
        st.rerun()


def users_admin(ws: Workspace, actor: Actor) -> None:
    """Admins: add researchers / readers, set passwords (dashboard users and reader-study reader codes)."""
    if not allowed(actor, "manage_users"):
        return
    with st.expander("Users and passwords (admin)", icon=":material/manage_accounts:"):
        users = list_users(ws)
        st.dataframe(users, hide_index=True, width="stretch")
        with st.form("add_user"):
            cols = st.columns(3)
            name = cols[0].text_input("User name (or the e-mail of an organisation sign-on)", key="user_name")
            role = cols[1].selectbox("Role", ROLES, index=ROLES.index(READER), key="user_role")
            password = cols[2].text_input("Password (empty: organisation sign-on only)", type="password",
                                          key="user_password",
                                          help=f"At least {MIN_STAFF_PASSWORD_LENGTH} characters for admins and "
                                               f"researchers, {MIN_PASSWORD_LENGTH} for readers.")
            if st.form_submit_button("Add or update user"):
                try:
                    set_user(ws, name, role, password or None, actor=actor)
                    st.success(f"User {plain(name.strip())} saved as {role}.")
                except (InputError, AccessDenied) as exc:
                    st.error(plain(exc))
        others = [u["user_id"] for u in users if u["user_id"] != actor.user_id]
        if others:
            cols = st.columns([3, 1])
            doomed = cols[0].selectbox("Remove user", others, key="user_remove_name")
            if cols[1].button("Remove", key="user_remove", icon=":material/delete:"):
                remove_user(ws, doomed, actor=actor)
                st.rerun()
        _locks_admin(ws, actor)
        st.markdown("**Reader-study passwords** (per reader code; a formal study admits only readers with one)")
        with st.form("reader_password"):
            cols = st.columns(2)
            code = cols[0].text_input("Reader code", key="reader_pw_code")
            password = cols[1].text_input("Password (empty: remove it)", type="password", key="reader_pw_value")
            if st.form_submit_button("Set reader password"):
                try:
                    if password:
                        set_reader_password(ws, code, password, actor=actor)
                        st.success(f"Password set for reader {plain(code.strip())}.")
                    else:
                        removed = remove_reader_password(ws, code, actor=actor)
                        st.info(f"Reader {plain(code.strip())}: " + ("password removed." if removed else
                                                                      "had no password."))
                except (InputError, AccessDenied) as exc:
                    st.error(plain(exc))


def _locks_admin(ws: Workspace, actor: Actor) -> None:
    """Names and browsers locked after failed sign-ins, each with an Unlock button (admins)."""
    locks = list_locks(ws, actor=actor)
    if not locks:
        st.caption("No sign-in is locked.")
        return
    st.markdown("**Locked sign-ins** (too many failed attempts)")
    st.dataframe(pd.DataFrame([{"locked": f"{lock['kind']}: {lock['key']}", "minutes left": lock["minutes_left"],
                                "locks in a row": lock["strikes"]} for lock in locks]),
                 hide_index=True, width="stretch", key="user_locks")
    labels = {(lock["kind"], lock["key"]): f"{lock['kind']}: {lock['key']}" for lock in locks}
    cols = st.columns([3, 1])
    chosen = cols[0].selectbox("Unlock", list(labels), format_func=labels.get, key="user_unlock_choice")
    if cols[1].button("Unlock", key="user_unlock", icon=":material/lock_open:"):
        unlock(ws, chosen[1], chosen[0], actor=actor)
        st.rerun()
