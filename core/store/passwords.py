"""The one password hasher: scrypt with a per-password random salt and a constant-time check.

Used by reader passwords (core/readers/auth.py) and dashboard users (core/store/access.py)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

from core.errors import InputError

# scrypt cost: 2**14 x 8 x 1 uses 16 MiB and ~50 ms per check, the interactive-login level from the
# scrypt paper; stored per row so it can be raised later without invalidating existing passwords.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# Minimum lengths (NIST SP 800-63B: at least 8 characters for a memorised secret, no composition rules). Staff
# (admins, researchers) reach patient data and every result: 12. Readers and reader-study passwords only grade: 8.
MIN_PASSWORD_LENGTH = 8
MIN_STAFF_PASSWORD_LENGTH = 12


class PasswordHash(NamedTuple):
    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=2 * 128 * r * n + 1024 * 1024)


def check_password_length(password: str | None, who: str, *, staff: bool = False) -> str:
    """The password, or an InputError naming `who` and the minimum length (12 for staff, 8 otherwise)."""
    least = MIN_STAFF_PASSWORD_LENGTH if staff else MIN_PASSWORD_LENGTH
    if len(password or "") < least:
        kind = "a staff account (admin or researcher)" if staff else "a reader"
        raise InputError(f"password for {who}: needs at least {least} characters for {kind}")
    return str(password)


def hash_password(password: str) -> PasswordHash:
    salt = secrets.token_bytes(SALT_BYTES)
    return PasswordHash(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P), SCRYPT_N, SCRYPT_R, SCRYPT_P)


def verify_password(password: str | None, stored) -> bool:
    """True when `password` matches `stored` (a row with salt, hash, n, r, p); `stored` None means no password:
    the same work is spent so timing does not reveal which names exist."""
    if stored is None or password is None:
        _scrypt(str(password or ""), secrets.token_bytes(SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    digest = _scrypt(str(password), stored["salt"], stored["n"], stored["r"], stored["p"])
    # Constant-time comparison so the time taken does not tell how much of the hash matched.
    return hmac.compare_digest(digest, stored["hash"])
