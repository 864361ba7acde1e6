"""The penalty matrix in use for each task, kept as a workspace setting: the Penalties page sets it; every page and
the exported report read it from here, as one checked Penalty (core.metrics.penalties) resolved once per use."""

from __future__ import annotations

from core.data.tasks import Task
from core.errors import InputError
from core.metrics.penalties import Penalty
from core.store import Workspace

# The workspace setting: {task name: {"name": str, "matrix": [[...]]}}.
ACTIVE_PENALTY_SETTING = "active_penalty"
DEFAULT_PENALTY_NAME = "task default"
UNNAMED_PENALTY = "saved"


def default_penalty(task: Task) -> Penalty:
    """The task's own matrix."""
    return Penalty.of(task.penalty(), task.classes, DEFAULT_PENALTY_NAME, "default")


def stored_penalty(task: Task, name: str | None, matrix, source: str = "saved") -> Penalty | None:
    """The Penalty when `matrix` is a valid penalty matrix for this task; None for a missing or damaged one (e.g.
    saved for another class list), so callers fall back rather than break."""
    if matrix is None:
        return None
    try:
        return Penalty.of(matrix, task.classes, name or UNNAMED_PENALTY, source)
    except InputError:
        return None


def saved_penalty(ws: Workspace | None, task: Task) -> Penalty | None:
    """The workspace's active matrix for this task, if a valid one is saved."""
    saved = ((ws.get_setting(ACTIVE_PENALTY_SETTING, {}) if ws is not None else {}) or {}).get(task.name) or {}
    return stored_penalty(task, saved.get("name"), saved.get("matrix"))


def resolve_penalty(ws: Workspace | None, task: Task, penalty=None, penalty_name: str | None = None) -> Penalty:
    """The penalty matrix to use: the one given (a Penalty as it is, or a matrix checked here), else the workspace's
    active matrix for this task (set on the Penalties page), else the task's default. Call it once per use (a
    report, a page) and pass the Penalty on."""
    if isinstance(penalty, Penalty):
        return penalty.for_classes(task.classes)
    if penalty is not None:
        return Penalty.of(penalty, task.classes, penalty_name or "custom", "given")
    return saved_penalty(ws, task) or default_penalty(task)


def save_active_penalty(ws: Workspace, task: Task, name: str, matrix) -> Penalty:
    """Make `matrix` the workspace's active matrix for this task (written only when it changed); returns it."""
    penalty = Penalty.of(matrix, task.classes, name, "saved")
    rows = [list(row) for row in penalty.rows]
    saved = ws.get_setting(ACTIVE_PENALTY_SETTING, {}) or {}
    if saved.get(task.name) != {"name": name, "matrix": rows}:
        saved[task.name] = {"name": name, "matrix": rows}
        ws.set_setting(ACTIVE_PENALTY_SETTING, saved)
    return penalty
