"""The workspace's pseudonymisation key: 32 random bytes in `<workspace>/patient.key` (mode 0600), outside the
SQLite registry, made on first use. It keys the HMAC-SHA256 that turns a DICOM PatientID (and the UIDs of an
uploaded file) into its stored pseudonym, so the pseudonyms cannot be reversed by trying every MRN without it, and
two workspaces give the same patient different pseudonyms. The key is never logged, shown or stored elsewhere;
losing it only means later uploads of the same patient are no longer linked to earlier ones."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.errors import StorageError, storage_error

KEY_FILE = "patient.key"
KEY_BYTES = 32
_CACHE: dict[tuple[str, int, int], bytes] = {}


def key_path(root: str | Path) -> Path:
    return Path(root) / KEY_FILE


def _create(path: Path) -> None:
    """Write a new key so that no reader ever sees a partial file: a private temporary file (0600 from its
    creation, never wider), then a hard link onto the final name, which fails if another process got there first."""
    # The ".<name>.<pid>.tmp" form is what `python -m core doctor` removes once the writing process is gone.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made the key first: theirs is the one
    finally:
        tmp.unlink(missing_ok=True)


def patient_key(root: str | Path) -> bytes:
    """The key of the workspace at `root`, created (mode 0600) on first use."""
    path = key_path(Path(root).expanduser().resolve())
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(path)
        st = path.stat()
        if st.st_mode & 0o077:
            os.chmod(path, 0o600)  # copied with looser permissions: only the owner may read it
        cache_key = (str(path), st.st_ino, st.st_mtime_ns)
        if cache_key not in _CACHE:
            with open(path, "rb") as f:
                data = f.read(KEY_BYTES + 1)
            if len(data) != KEY_BYTES:
                # Never replaced silently: a new key would give every known patient a new pseudonym.
                raise StorageError(f"{path}: the workspace's pseudonymisation key is damaged ({len(data)} bytes, "
                                   f"expected {KEY_BYTES}); restore it from a backup of the workspace, or delete it "
                                   "to start a new one (patients added before will then not be linked to new ones)")
            _CACHE[cache_key] = data
        return _CACHE[cache_key]
    except OSError as exc:
        raise storage_error(exc, Path(root), "reading the workspace's pseudonymisation key") from None
