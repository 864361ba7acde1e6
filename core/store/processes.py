"""Is a process still running? (Linux /proc): run status and `python -m core doctor` both ask."""

from __future__ import annotations

import os
from pathlib import Path


def process_start_token(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux /proc), so a reused pid is never mistaken for our run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after its ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def process_state(pid: int) -> str | None:
    """One-letter process state from /proc (R, S, Z...), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def process_alive(pid: int | None, start_token: str | None = None) -> bool:
    """True while `pid` is a live process (not a zombie) and, when a token was recorded, the same one."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if process_state(int(pid)) == "Z":
        return False
    if start_token is not None:
        current = process_start_token(int(pid))
        if current is not None and current != start_token:
            return False
    return True
