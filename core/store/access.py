"""Who may do what: roles, the one permission table, dashboard users, sign-in sessions and data roots.

Roles live in the workspace (table `users`); every core function a page calls to change something takes an
`actor` keyword and calls `require(actor, action)`. The command line runs as `SHELL` (the server's own user,
who can read every file anyway); the dashboard passes the signed-in user."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError
from core.store.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from core.store.workspace import Workspace

ADMIN, RESEARCHER, READER = "admin", "researcher", "reader"
ROLES = (ADMIN, RESEARCHER, READER)
_STAFF = frozenset({ADMIN, RESEARCHER})

# action -> roles allowed. The one owner of this knowledge: pages and core both ask `allowed` / `require`.
PERMISSIONS: dict[str, frozenset[str]] = {
    "start_run": _STAFF,
    "cancel_run": _STAFF,
    "register_dataset": _STAFF,
    "register_server_folder": _STAFF,
    "replace_readings": _STAFF,
    "create_study": _STAFF,
    "view_results": _STAFF,  # every page but the Reader study page
    "edit_records": _STAFF,  # rename, archive or restore a run or test set (nothing is destroyed)
    "delete_data": frozenset({ADMIN}),
    "manage_users": frozenset({ADMIN}),
    "choose_workspace": frozenset({ADMIN}),
    "grade": frozenset(ROLES),
}

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
"""


class AccessDenied(InputError, PermissionError):
    """The signed-in user's role does not allow this action (an InputError, so pages show its message)."""


@dataclass(frozen=True)
class Actor:
    user_id: str
    role: str
    shell: bool = False  # True only for SHELL; no sign-in ever sets it


SHELL = Actor("server shell", ADMIN, shell=True)  # the command line and scripts on the server itself


def allowed(actor: Actor | None, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}")
    return actor is not None and actor.role in PERMISSIONS[action]


def require(actor: Actor | None, action: str) -> None:
    """Raise AccessDenied unless `actor` may do `action`."""
    if not allowed(actor, action):
        who = "nobody signed in" if actor is None else f"{actor.user_id!r} (role {actor.role})"
        roles = " or ".join(sorted(PERMISSIONS[action]))
        raise AccessDenied(f"not allowed: {action.replace('_', ' ')} needs the role {roles}; {who} may not")


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


def _write_user(ws: Workspace, user_id: str, role: str, password: str | None) -> None:
    if role not in ROLES:
        raise InputError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if role == READER:  # a reader grades under this name: one that no study would take is refused here
        clean_reader_code(user_id)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"password for {user_id!r}: needs at least {MIN_PASSWORD_LENGTH} characters")
    stored = hash_password(password) if password is not None else (None,) * 5
    with _Users(ws) as con:
        con.execute("INSERT OR REPLACE INTO users (user_id, role, salt, hash, n, r, p, created) "
                    "VALUES (?,?,?,?,?,?,?,?)", (user_id, role, *stored, time.time()))


def create_first_admin(ws: Workspace, user_id: str, password: str) -> Actor:
    """First start: the local admin. Refused once any user exists (then an admin adds users)."""
    user_id = _clean_user_id(user_id)
    if has_users(ws):
        raise AccessDenied(f"workspace {ws.root}: an admin already exists; ask them to add you")
    if not password:
        raise InputError("admin password: must not be empty")
    _write_user(ws, user_id, ADMIN, password)
    return Actor(user_id, ADMIN)


def set_user(ws: Workspace, user_id: str, role: str, password: str | None = None, *, actor: Actor) -> None:
    """Add a user or change their role / password (password None: sign in through the organisation's sign-on
    only, matched by e-mail)."""
    require(actor, "manage_users")
    user_id = _clean_user_id(user_id)
    if user_id == actor.user_id and role != ADMIN:
        raise InputError(f"user {user_id!r}: you cannot take the admin role from yourself")
    _write_user(ws, user_id, role, password)


def remove_user(ws: Workspace, user_id: str, *, actor: Actor) -> bool:
    require(actor, "manage_users")
    if str(user_id).strip() == actor.user_id:
        raise InputError("you cannot remove your own account")
    with _Users(ws) as con:
        con.execute("DELETE FROM user_sessions WHERE user_id=?", (user_id,))
        return con.execute("DELETE FROM users WHERE user_id=?", (user_id,)).rowcount > 0


def user_actor(ws: Workspace, user_id: str) -> Actor | None:
    """The actor of a known user (e.g. an organisation sign-on identity), None when not in the users table."""
    with _Users(ws) as con:
        row = con.execute("SELECT user_id, role FROM users WHERE user_id=? COLLATE NOCASE",
                          (str(user_id or "").strip(),)).fetchone()
    return None if row is None else Actor(row["user_id"], row["role"])


def sign_in(ws: Workspace, user_id: str, password: str) -> Actor:
    """Check a user's password; AccessDenied with one message for an unknown name or a wrong password."""
    with _Users(ws) as con:
        row = con.execute("SELECT * FROM users WHERE user_id=?", (str(user_id or "").strip(),)).fetchone()
    stored = row if row is not None and row["hash"] is not None else None
    if not verify_password(password, stored):
        raise AccessDenied("sign-in refused: unknown user name or wrong password")
    return Actor(row["user_id"], row["role"])


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
def data_roots(ws: Workspace) -> list[Path]:
    """Folders server folders may be registered from: $CORE_DATA_ROOTS, the workspace setting `data_roots`,
    and the workspace itself; symlinks resolved."""
    texts = [t for t in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if t.strip()]
    texts += [str(t) for t in (ws.get_setting(DATA_ROOTS_SETTING, []) or [])]
    return [Path(t).expanduser().resolve() for t in texts] + [Path(ws.root).resolve()]


def check_server_folder(ws: Workspace, folder: str | Path, *, actor: Actor) -> Path:
    """The resolved folder when `actor` may register it: the shell may register any folder; dashboard users only
    folders under `data_roots` (a symlink pointing out of a root is refused)."""
    require(actor, "register_server_folder")
    path = Path(folder).expanduser().resolve()
    if actor.shell:
        return path
    roots = data_roots(ws)
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise AccessDenied(f"folder {path}: outside the folders this server allows "
                           f"({', '.join(map(str, roots))}); an admin sets them with ${DATA_ROOTS_ENV} or the "
                           f"workspace setting {DATA_ROOTS_SETTING!r}")
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
