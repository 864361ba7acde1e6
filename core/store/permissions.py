"""Who may do what: the roles, the one permission table, the Actor a core function is called as, and `require`.

Every core function a page calls to change something takes an `actor` keyword and calls `require(actor, action)`.
The command line runs as `SHELL` (the server's own user, who can read every file anyway); the dashboard passes the
signed-in user (core.store.access: users, sign-in sessions, throttling, data roots)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InputError

ADMIN, RESEARCHER, READER = "admin", "researcher", "reader"
ROLES = (ADMIN, RESEARCHER, READER)
_STAFF = frozenset({ADMIN, RESEARCHER})

# action -> roles allowed. The one owner of this knowledge: pages and core both ask `allowed` / `require`.
PERMISSIONS: dict[str, frozenset[str]] = {
    "start_run": _STAFF,
    "cancel_run": _STAFF,
    "cancel_job": _STAFF,  # stop a background job (audit, inference, maps: core/jobs.py), anyone's
    "register_dataset": _STAFF,
    "register_server_folder": _STAFF,
    "replace_readings": _STAFF,
    "create_study": _STAFF,
    "view_results": _STAFF,  # every page but the Reader study page
    "edit_records": _STAFF,  # rename, archive or restore a run or test set (nothing is destroyed)
    "delete_data": frozenset({ADMIN}),
    "manage_users": frozenset({ADMIN}),
    "choose_workspace": frozenset({ADMIN}),
    "read_audit": frozenset({ADMIN}),  # the audit trail (core/store/audit_trail.py, the Audit trail page)
    "grade": frozenset({READER}),  # only a reader grades, under their own name: staff never answer as a reader
}


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


def _who(actor: Actor | None) -> str:
    return "nobody signed in" if actor is None else f"{actor.user_id!r} (role {actor.role})"


def require(actor: Actor | None, action: str) -> None:
    """Raise AccessDenied unless `actor` may do `action`."""
    if not allowed(actor, action):
        roles = " or ".join(sorted(PERMISSIONS[action]))
        raise AccessDenied(f"not allowed: {action.replace('_', ' ')} needs the role {roles}; {_who(actor)} may not")


def require_own_reading(actor: Actor | None, reader_id: str) -> None:
    """A reader's study session (joining, answers, finishing) is theirs alone: only that reader, signed in, may
    write it; staff never answer as a reader. The server's shell (scripts, the command line) is the exception."""
    if actor is not None and actor.shell:
        return
    require(actor, "grade")
    reader_id = str(reader_id).strip()
    if actor.user_id != reader_id:
        raise AccessDenied(f"not allowed: only reader {reader_id!r}, signed in, may grade as {reader_id!r}; "
                           f"{_who(actor)} may not")
