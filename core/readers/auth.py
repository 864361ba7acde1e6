"""Optional reader passwords: a per-reader random salt, an scrypt hash, and a constant-time check."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from core.errors import InputError
from core.readers.schema import ensure_schema
from core.store import Workspace

# scrypt cost: 2**14 x 8 x 1 uses 16 MiB and ~50 ms per check, the interactive-login level from the
# scrypt paper; stored per row so it can be raised later without invalidating existing passwords.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 6


class ReaderAuthError(PermissionError):
    """A reader could not be identified: wrong or missing password."""


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=2 * 128 * r * n + 1024 * 1024)


def set_reader_password(ws: Workspace, reader_id: str, password: str) -> None:
    """Set (or change) a reader's password. Once any reader has one, the workspace asks every reader."""
    reader_id = str(reader_id).strip()
    if not reader_id:
        raise InputError("reader code: must not be empty")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InputError(f"password for reader {reader_id!r}: needs at least {MIN_PASSWORD_LENGTH} characters")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    with ws.connect() as con:
        ensure_schema(con)
        con.execute("INSERT OR REPLACE INTO reader_passwords (reader_id, salt, hash, n, r, p, created) "
                    "VALUES (?,?,?,?,?,?,?)", (reader_id, salt, digest, SCRYPT_N, SCRYPT_R, SCRYPT_P, time.time()))


def check_reader_password(ws: Workspace, reader_id: str, password: str | None) -> bool:
    """True when `password` matches the reader's stored hash; False for a wrong password or no password set."""
    with ws.connect() as con:
        ensure_schema(con)
        row = con.execute("SELECT salt, hash, n, r, p FROM reader_passwords WHERE reader_id=?",
                          (str(reader_id).strip(),)).fetchone()
    if row is None or password is None:
        # Spend the same work as a real check so timing does not reveal which reader codes exist.
        _hash(str(password or ""), secrets.token_bytes(SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    digest = _hash(str(password), row["salt"], row["n"], row["r"], row["p"])
    # Constant-time comparison so the time taken does not tell how much of the hash matched.
    return hmac.compare_digest(digest, row["hash"])


def passwords_configured(ws: Workspace) -> bool:
    """Whether this workspace has reader passwords at all (then every reader must give one)."""
    with ws.connect() as con:
        ensure_schema(con)
        return con.execute("SELECT 1 FROM reader_passwords LIMIT 1").fetchone() is not None


def remove_reader_password(ws: Workspace, reader_id: str) -> bool:
    """Delete one reader's password; returns whether there was one."""
    with ws.connect() as con:
        ensure_schema(con)
        return con.execute("DELETE FROM reader_passwords WHERE reader_id=?", (str(reader_id).strip(),)).rowcount > 0


def authenticate_reader(ws: Workspace, reader_id: str, password: str | None) -> None:
    """Raise ReaderAuthError unless the reader may proceed: always when no passwords are configured,
    otherwise only with the right password (a reader without a password is refused)."""
    if not passwords_configured(ws):
        return
    if not check_reader_password(ws, reader_id, password):
        raise ReaderAuthError(f"reader {str(reader_id).strip()!r}: wrong password, or no password set for this "
                              f"reader code (this workspace requires reader passwords)")
