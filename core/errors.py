"""The one exception type for problems with what a user gave us (files, CSVs, archives, configs)."""

import errno


class InputError(ValueError):
    """Bad user input. The message names the file (or field) and the problem, in plain words."""


# OSErrors of the storage itself (full disk or quota, file too large for a limit, read-only, no permission, I/O).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.EIO})


class StorageError(InputError):
    """The workspace could not be written or read (full disk, read-only folder, failing storage). The message
    names the workspace, what was being stored and the cause; nothing was acknowledged as stored."""


class DamagedRegistryError(StorageError):
    """The workspace registry is not a database or fails SQLite's integrity check; the message says which backup
    `python -m core doctor --fix` restores (core/store/backup.py)."""

    def __init__(self, message: str, path: object = None):
        super().__init__(message)
        self.path = path


def storage_error(exc: BaseException, workspace: object, action: str) -> StorageError:
    """A StorageError for an OSError or sqlite3.OperationalError raised while `action` in `workspace`."""
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
    code = getattr(exc, "errno", None)
    low = text.lower()
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "full" in low:
        hint = "the disk (or your quota) is full: free some space and try again"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in low or "read-only" in low:
        hint = "the folder is read-only or not writable by the user running the app: make it writable"
    elif "i/o error" in low or code == errno.EIO:
        hint = "the disk reported an I/O error (often a full disk, or storage that failed or was unmounted)"
    elif "locked" in low or "busy" in low:
        hint = "another process holds the registry; try again in a moment"
    else:
        hint = "check that the folder exists, is writable and has free space"
    return StorageError(f"workspace {workspace}: {action} failed: {text}; {hint}")


# The one wording of "these files can be skipped" in messages about unreadable images (the dashboard's
# uploader checks for it to point at its checkbox).
SKIP_BAD_HINT = "Fix them, or choose to skip unreadable files to keep the rest"
