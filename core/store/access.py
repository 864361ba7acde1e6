"""Dashboard users, sign-in sessions and throttling, data roots: who is signed in, under which role.

Roles live in the workspace (table `users`). The roles, the one permission table, Actor, SHELL and `require` are
core.store.permissions (below the audit trail, which checks them too); they are imported from here as well."""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from core.errors import InputError
from core.store import audit_trail
from core.store.passwords import check_password_length, hash_password, verify_password
from core.store.permissions import (ADMIN, PERMISSIONS, READER, RESEARCHER, ROLES, SHELL, AccessDenied,  # noqa: F401
                                    Actor, allowed, require, require_own_reading)  # (re-exported: the public path)
from core.store.workspace import Workspace

SESSION_SECONDS = 12 * 3600  # a sign-in lasts a working day; a reload within it keeps the user signed in
MAX_USER_ID_LENGTH = 120
DATA_ROOTS_ENV = "CORE_DATA_ROOTS"  # os.pathsep-separated folders server folders may be registered from
DATA_ROOTS_SETTING = "data_roots"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, role TEXT NOT NULL, salt BLOB, hash BLOB, n INTEGER, r INTEGER, p INTEGER,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS user_sessions (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    kind TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures (kind, key, at);
CREATE TABLE IF NOT EXISTS sign_in_locks (
    kind TEXT NOT NULL, key TEXT NOT NULL, until REAL NOT NULL, strikes INTEGER NOT NULL, locked REAL NOT NULL,
    PRIMARY KEY (kind, key));
"""

# Sign-in throttling, per account name (as typed, case ignored: unknown names too, so a lock never tells whether an
# account exists) and per client (the browser's IP address, else its session): MAX_FAILURES failed sign-ins within
# FAILURE_WINDOW lock it for LOCK_SECONDS, doubled with each further lock (strike), at most MAX_LOCK_SECONDS; an
# admin unlocks earlier (Home page, `python -m core users unlock`). A successful sign-in clears the account's count.
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
LOCK_SECONDS = 15 * 60
MAX_LOCK_SECONDS = 24 * 3600
ACCOUNT, CLIENT = "account", "client"


class SignInLocked(AccessDenied):
    """Too many failed sign-ins for this name or from this client: refused even with the right password."""


# -- users -------------------------------------------------------------------------------------------------
@contextmanager
def _Users(ws: Workspace):  # noqa: N802 - reads like the table it opens
    with ws.connect() as con:
        for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would end the transaction
            con.execute(statement)
        yield con


# Reader codes: a signed-in reader reads under their user name, so these rules hold for reader accounts too.
MAX_READER_ID_LENGTH = 64
SIMULATED_PREFIX = "SIMULATED-"  # reserved for the simulated readers' codes


def clean_reader_code(reader_id: str) -> str:
    """A reader code as stored with answers and readings (the one owner of its rules), or an InputError."""
    reader_id = str(reader_id or "").strip()
    if not reader_id:
        raise InputError("reader: give a name or a reader code")
    if len(reader_id) > MAX_READER_ID_LENGTH:
        raise InputError(f"reader code: at most {MAX_READER_ID_LENGTH} characters")
    if reader_id.upper().startswith(SIMULATED_PREFIX):
        raise InputError(f"reader code: {SIMULATED_PREFIX!r} is reserved for simulated readers")
    return reader_id


def _clean_user_id(user_id: str) -> str:
    user_id = str(user_id or "").strip()
    if not user_id:
        raise InputError("user name: must not be empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InputError(f"user name: at most {MAX_USER_ID_LENGTH} characters")
    return user_id


def has_users(ws: Workspace) -> bool:
    with _Users(ws) as con:
        return con.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def list_users(ws: Workspace) -> list[dict]:
    with _Users(ws) as con:
        return [{"user_id": r["user_id"], "role": r["role"], "password": r["hash"] is not None}
                for r in con.execute("SELECT user_id, role, hash FROM users ORDER BY role, user_id")]


def _write_user(ws: Workspace, user_id: str, role: str, password: str | None, actor: Actor) -> None:
    if role not in ROLES:
        raise InputError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if role == READER:  # a reader grades under this name: one that no study would take is refused here
        clean_reader_code(user_id)
    if password is not None:  # staff reach patient data and every result: a longer minimum
        check_password_length(password, repr(user_id), staff=role != READER)
    stored = hash_password(password) if password is not None else (None,) * 5
    with _Users(ws) as con:
        known = con.execute("SELECT role FROM users WHERE user_id=?", (user_id,)).fetchone()
        con.execute("INSERT OR REPLACE INTO users (user_id, role, salt, hash, n, r, p, created) "
                    "VALUES (?,?,?,?,?,?,?,?)", (user_id, role, *stored, time.time()))
        audit_trail.record(ws, actor, "user_saved", f"user {user_id}",
                           {"role": role, "before": None if known is None else known["role"],
                            "password": "set" if password is not None else "none (organisation sign-on)"}, con=con)


def create_first_admin(ws: Workspace, user_id: str, password: str) -> Actor:
    """First start: the local admin. Refused once any user exists (then an admin adds users)."""
    user_id = _clean_user_id(user_id)
    if has_users(ws):
        raise AccessDenied(f"workspace {ws.root}: an admin already exists; ask them to add you")
    if not password:
        raise InputError("admin password: must not be empty")
    _write_user(ws, user_id, ADMIN, password, Actor(user_id, ADMIN))
    return Actor(user_id, ADMIN)


def set_user(ws: Workspace, user_id: str, role: str, password: str | None = None, *, actor: Actor) -> None:
    """Add a user or change their role / password (password None: sign in through the organisation's sign-on
    only, matched by e-mail)."""
    require(actor, "manage_users")
    user_id = _clean_user_id(user_id)
    if user_id == actor.user_id and role != ADMIN:
        raise InputError(f"user {user_id!r}: you cannot take the admin role from yourself")
    _write_user(ws, user_id, role, password, actor)


def remove_user(ws: Workspace, user_id: str, *, actor: Actor) -> bool:
    require(actor, "manage_users")
    if str(user_id).strip() == actor.user_id:
        raise InputError("you cannot remove your own account")
    with _Users(ws) as con:
        con.execute("DELETE FROM user_sessions WHERE user_id=?", (user_id,))
        removed = con.execute("DELETE FROM users WHERE user_id=?", (user_id,)).rowcount > 0
        if removed:
            audit_trail.record(ws, actor, "user_removed", f"user {user_id}", con=con)
        return removed


def user_actor(ws: Workspace, user_id: str) -> Actor | None:
    """The actor of a known user (e.g. an organisation sign-on identity), None when not in the users table."""
    with _Users(ws) as con:
        row = con.execute("SELECT user_id, role FROM users WHERE user_id=? COLLATE NOCASE",
                          (str(user_id or "").strip(),)).fetchone()
    return None if row is None else Actor(row["user_id"], row["role"])


def _keys(user_id: str, client: str | None) -> list[tuple[str, str]]:
    keys = [(ACCOUNT, user_id.casefold()[:MAX_USER_ID_LENGTH])]
    return keys + [(CLIENT, str(client)[:200])] if client else keys


def _locked_until(con, keys: list[tuple[str, str]], now: float) -> float | None:
    ends = [r["until"] for kind, key in keys for r in con.execute(
        "SELECT until FROM sign_in_locks WHERE kind=? AND key=? AND until > ?", (kind, key, now))]
    return max(ends) if ends else None


def _locked_message(until: float, now: float) -> str:
    minutes = max(1, math.ceil((until - now) / 60))
    return (f"sign-in refused: too many failed sign-ins; sign-in is locked for {minutes} more minute"
            f"{'s' if minutes != 1 else ''}. Try again then, or ask an admin to unlock it.")


def _count_failure(ws: Workspace, con, keys: list[tuple[str, str]], name: str, now: float) -> float | None:
    """Store one failed sign-in against each key; lock a key that reached MAX_FAILURES in FAILURE_WINDOW.
    Returns the end of the lock made, if any."""
    until = None
    for kind, key in keys:
        con.execute("DELETE FROM sign_in_failures WHERE at < ?", (now - FAILURE_WINDOW,))
        con.execute("INSERT INTO sign_in_failures (kind, key, at) VALUES (?,?,?)", (kind, key, now))
        failures = con.execute("SELECT COUNT(*) FROM sign_in_failures WHERE kind=? AND key=? AND at >= ?",
                               (kind, key, now - FAILURE_WINDOW)).fetchone()[0]
        if failures < MAX_FAILURES:
            continue
        before = con.execute("SELECT strikes FROM sign_in_locks WHERE kind=? AND key=?", (kind, key)).fetchone()
        strikes = 1 + (before["strikes"] if before is not None else 0)
        end = now + min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** (strikes - 1))
        con.execute("INSERT OR REPLACE INTO sign_in_locks (kind, key, until, strikes, locked) VALUES (?,?,?,?,?)",
                    (kind, key, end, strikes, now))
        con.execute("DELETE FROM sign_in_failures WHERE kind=? AND key=?", (kind, key))
        audit_trail.record(ws, name, "lock", f"{kind} {key}",
                           {"failures": failures, "strike": strikes, "minutes": round((end - now) / 60)}, con=con)
        until = end if until is None else max(until, end)
    return until


def sign_in(ws: Workspace, user_id: str, password: str, *, client: str | None = None,
            now: float | None = None) -> Actor:
    """Check a user's password; AccessDenied with one message for an unknown name or a wrong password, and
    SignInLocked (even with the right password) while the name or the `client` (the browser's address or session)
    is locked after MAX_FAILURES failures. Every outcome goes into the audit trail."""
    now = time.time() if now is None else now
    name = str(user_id or "").strip()
    keys = _keys(name, client)
    with _Users(ws) as con:
        until = _locked_until(con, keys, now)
        if until is not None:
            audit_trail.record(ws, name, "sign_in_locked", f"user {name}", {"client": client}, con=con)
    if until is not None:  # no password check at all while locked: the right one is refused too
        raise SignInLocked(_locked_message(until, now))
    with _Users(ws) as con:
        row = con.execute("SELECT * FROM users WHERE user_id=?", (name,)).fetchone()
    stored = row if row is not None and row["hash"] is not None else None
    if not verify_password(password, stored):
        with _Users(ws) as con:
            audit_trail.record(ws, name, "sign_in_failed", f"user {name}", {"client": client}, con=con)
            until = _count_failure(ws, con, keys, name, now)
        if until is not None:
            raise SignInLocked(_locked_message(until, now))
        raise AccessDenied("sign-in refused: unknown user name or wrong password")
    actor = Actor(row["user_id"], row["role"])
    with _Users(ws) as con:  # the account's count starts again; the client's failures still age out
        con.execute("DELETE FROM sign_in_failures WHERE kind=? AND key=?", keys[0])
        con.execute("DELETE FROM sign_in_locks WHERE kind=? AND key=?", keys[0])
        audit_trail.record(ws, actor, "sign_in", f"user {actor.user_id}", {"client": client}, con=con)
    return actor


def list_locks(ws: Workspace, *, actor: Actor, now: float | None = None) -> list[dict]:
    """Names and clients locked now (kind, key, until, strikes, minutes_left), for an admin."""
    require(actor, "manage_users")
    now = time.time() if now is None else now
    with _Users(ws) as con:
        rows = con.execute("SELECT kind, key, until, strikes FROM sign_in_locks WHERE until > ? "
                           "ORDER BY kind, key", (now,)).fetchall()
    return [{**dict(r), "minutes_left": max(1, math.ceil((r["until"] - now) / 60))} for r in rows]


def unlock(ws: Workspace, key: str, kind: str = ACCOUNT, *, actor: Actor) -> bool:
    """End a lock now (an account name, case ignored, or a client) and forget its failures and strikes; returns
    whether it was locked."""
    require(actor, "manage_users")
    if kind not in (ACCOUNT, CLIENT):
        raise InputError(f"unlock: kind {kind!r}: choose {ACCOUNT} or {CLIENT}")
    key = str(key or "").strip()
    key = key.casefold()[:MAX_USER_ID_LENGTH] if kind == ACCOUNT else key
    with _Users(ws) as con:
        was = con.execute("DELETE FROM sign_in_locks WHERE kind=? AND key=? AND until > ?",
                          (kind, key, time.time())).rowcount > 0
        con.execute("DELETE FROM sign_in_locks WHERE kind=? AND key=?", (kind, key))
        con.execute("DELETE FROM sign_in_failures WHERE kind=? AND key=?", (kind, key))
        audit_trail.record(ws, actor, "unlock", f"{kind} {key}", {"was_locked": was}, con=con)
    return was


# -- sessions that survive a reload --------------------------------------------------------------------------
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(ws: Workspace, actor: Actor, seconds: float = SESSION_SECONDS) -> str:
    """A random token for this sign-in (kept by the browser session); only its hash is stored."""
    token = secrets.token_urlsafe(32)
    with _Users(ws) as con:
        con.execute("DELETE FROM user_sessions WHERE expires < ?", (time.time(),))
        con.execute("INSERT INTO user_sessions (token_hash, user_id, expires) VALUES (?,?,?)",
                    (_digest(token), actor.user_id, time.time() + seconds))
    return token


def resume_session(ws: Workspace, token: str | None) -> Actor | None:
    """The actor a live token belongs to (with the user's current role), None when unknown or expired."""
    if not token:
        return None
    with _Users(ws) as con:
        row = con.execute("SELECT u.user_id, u.role FROM user_sessions s JOIN users u ON u.user_id = s.user_id "
                          "WHERE s.token_hash=? AND s.expires >= ?", (_digest(str(token)), time.time())).fetchone()
    return None if row is None else Actor(row["user_id"], row["role"])


def end_session(ws: Workspace, token: str | None) -> None:
    if token:
        with _Users(ws) as con:
            con.execute("DELETE FROM user_sessions WHERE token_hash=?", (_digest(str(token)),))


# -- server folders only under configured roots -------------------------------------------------------------
def server_data_roots() -> list[Path]:
    """The data roots this server process is configured with ($CORE_DATA_ROOTS), resolved: known in every process
    (dashboard, training run, command line), so they are what a manifest's rows may reach beyond their folder."""
    texts = [t for t in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if t.strip()]
    return [Path(t).expanduser().resolve() for t in texts]


def data_roots(ws: Workspace) -> list[Path]:
    """Folders server folders may be registered from: $CORE_DATA_ROOTS, the workspace setting `data_roots`,
    and the workspace itself; symlinks resolved."""
    texts = [str(t) for t in (ws.get_setting(DATA_ROOTS_SETTING, []) or [])]
    return server_data_roots() + [Path(t).expanduser().resolve() for t in texts] + [Path(ws.root).resolve()]


def check_server_folder(ws: Workspace, folder: str | Path, *, actor: Actor) -> Path:
    """The resolved folder when `actor` may register it: the shell may register any folder; dashboard users only
    folders under `data_roots` (a symlink pointing out of a root is refused), never the workspace's uploads."""
    require(actor, "register_server_folder")
    path = Path(folder).expanduser().resolve()
    if actor.shell:
        return path
    roots = data_roots(ws)
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise AccessDenied(f"folder {path}: outside the folders this server allows "
                           f"({', '.join(map(str, roots))}); an admin sets them with ${DATA_ROOTS_ENV} or the "
                           f"workspace setting {DATA_ROOTS_SETTING!r}")
    # The workspace is a root, but an upload is added once, through ingest_upload and its checks: its extracted
    # folder (or a folder holding the uploads) is not a server folder.
    uploads = Path(ws.uploads_dir).resolve()
    if path.is_relative_to(uploads) or uploads.is_relative_to(path):
        where = "is inside" if path.is_relative_to(uploads) else "holds"
        raise AccessDenied(f"folder {path}: {where} the workspace's uploads ({uploads}); uploaded data is added "
                           "through the upload form, not registered again as a server folder")
    return path


# -- formal studies need reader passwords ------------------------------------------------------------------
FORMAL_STUDIES_SETTING = "formal_studies"


def is_formal_study(ws: Workspace, study_id: str) -> bool:
    return study_id in (ws.get_setting(FORMAL_STUDIES_SETTING, []) or [])


def any_formal_study(ws: Workspace) -> bool:
    return bool(ws.get_setting(FORMAL_STUDIES_SETTING, []))


def mark_formal_study(ws: Workspace, study_id: str, formal: bool = True, *, actor: Actor) -> None:
    """A formal study admits only readers with a password (set by an admin)."""
    require(actor, "create_study")
    ids = [s for s in (ws.get_setting(FORMAL_STUDIES_SETTING, []) or []) if s != study_id]
    ws.set_setting(FORMAL_STUDIES_SETTING, ids + [study_id] if formal else ids)


def open_workspace_as(root: str | Path, *, actor: Actor) -> Workspace:
    """Open (or create) the workspace at `root`: admins only, and never onto an existing file."""
    require(actor, "choose_workspace")
    target = Path(str(root)).expanduser()
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a folder")
    return Workspace.open(target.resolve())
