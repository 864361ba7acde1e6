"""Optional reader passwords, hashed by core/store/passwords.py (scrypt, per-reader salt, constant-time check)."""

from __future__ import annotations

import time

from core.errors import InputError
from core.readers.schema import ensure_schema
from core.store import Workspace, audit_trail
from core.store.access import SHELL, Actor, require
from core.store.passwords import check_password_length, hash_password, verify_password


class ReaderAuthError(PermissionError):
    """A reader could not be identified: wrong or missing password."""


def set_reader_password(ws: Workspace, reader_id: str, password: str, *, actor: Actor = SHELL) -> None:
    """Set (or change) a reader's password (admins). Once any reader has one, the workspace asks every reader."""
    require(actor, "manage_users")
    reader_id = str(reader_id).strip()
    if not reader_id:
        raise InputError("reader code: must not be empty")
    check_password_length(password, f"reader {reader_id!r}")
    stored = hash_password(password)
    with ws.connect() as con:
        ensure_schema(con)
        con.execute("INSERT OR REPLACE INTO reader_passwords (reader_id, salt, hash, n, r, p, created) "
                    "VALUES (?,?,?,?,?,?,?)", (reader_id, *stored, time.time()))
        audit_trail.record(ws, actor, "reader_password_set", f"reader {reader_id}", con=con)


def check_reader_password(ws: Workspace, reader_id: str, password: str | None) -> bool:
    """True when `password` matches the reader's stored hash; False for a wrong password or no password set."""
    with ws.connect() as con:
        ensure_schema(con)
        row = con.execute("SELECT salt, hash, n, r, p FROM reader_passwords WHERE reader_id=?",
                          (str(reader_id).strip(),)).fetchone()
    return verify_password(password, row)


def passwords_configured(ws: Workspace) -> bool:
    """Whether this workspace has reader passwords at all (then every reader must give one)."""
    with ws.connect() as con:
        ensure_schema(con)
        return con.execute("SELECT 1 FROM reader_passwords LIMIT 1").fetchone() is not None


def remove_reader_password(ws: Workspace, reader_id: str, *, actor: Actor = SHELL) -> bool:
    """Delete one reader's password (admins); returns whether there was one."""
    require(actor, "manage_users")
    reader_id = str(reader_id).strip()
    with ws.connect() as con:
        ensure_schema(con)
        removed = con.execute("DELETE FROM reader_passwords WHERE reader_id=?", (reader_id,)).rowcount > 0
        if removed:
            audit_trail.record(ws, actor, "reader_password_removed", f"reader {reader_id}", con=con)
        return removed


def signed_in_with_password(ws: Workspace, reader_id: str, actor: Actor | None) -> bool | None:
    """Whether `actor` is reader `reader_id` signed in with their own account's password (checked at sign-in, by
    core.store.access.sign_in): True; their account has no password (organisation sign-on): False; `actor` is not
    that reader's account (the server's shell, scripts, nobody): None."""
    from core.store.access import list_users  # the users table's owner

    if actor is None or actor.shell or actor.user_id != str(reader_id).strip():
        return None
    account = next((u for u in list_users(ws) if u["user_id"] == actor.user_id), None)
    return None if account is None else bool(account["password"])


def authenticate_reader(ws: Workspace, reader_id: str, password: str | None, *, required: bool = False,
                        actor: Actor | None = None, owner: str | None = None) -> None:
    """Raise ReaderAuthError unless the reader may proceed: always when no passwords are configured (and the
    study is not formal: `required`), otherwise when the reader is `actor` signed in with their own password
    account (one sign-in is enough), or gives the right reader password (scripts; accounts without a password).
    `owner`: the reader whose session code `reader_id` is (an aided study's "<code> [unaided]"), default itself."""
    if not required and not passwords_configured(ws):
        return
    code = str(owner or reader_id).strip()
    account = signed_in_with_password(ws, code, actor)
    if account or check_reader_password(ws, reader_id, password):
        return
    why = "this study is formal" if required else "this workspace requires reader passwords"
    if account is False:  # signed in as themself, through the organisation's sign-on: no password was checked
        typed = " The reader password typed is not the one set for this code." if password else ""
        raise ReaderAuthError(
            f"reader {code!r}: {why}, so it admits readers who signed in with a password, and the account "
            f"{code!r} has none (it signs in through the organisation's sign-on).{typed} An admin sets a password "
            f"for the account {code!r} (Home page, Users); sign in with it, then join.")
    raise ReaderAuthError(f"reader {code!r}: wrong password, or no password set for this reader code ({why}; an "
                          "admin sets reader passwords on the Home page)")
