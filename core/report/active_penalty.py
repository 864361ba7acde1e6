"""The penalty matrix in use for each task, kept as a workspace setting: the Penalties page sets it; every page and
the exported report read it from here."""

from __future__ import annotations

import numpy as np

from core.data.tasks import Task
from core.errors import InputError
from core.metrics.penalties import check_penalty_matrix, refuse_costless_mistakes
from core.store import Workspace

# The workspace setting: {task name: {"name": str, "matrix": [[...]]}}.
ACTIVE_PENALTY_SETTING = "active_penalty"
DEFAULT_PENALTY_NAME = "task default"
UNNAMED_PENALTY = "saved"


def stored_penalty(task: Task, name: str | None, matrix) -> tuple[str, np.ndarray] | None:
    """(name, matrix) when `matrix` is a valid penalty matrix for this task; None for a missing or damaged one
    (e.g. saved for another class list), so callers fall back rather than break."""
    if matrix is None:
        return None
    try:
        return name or UNNAMED_PENALTY, refuse_costless_mistakes(check_penalty_matrix(matrix, task.num_classes))
    except InputError:
        return None


def saved_penalty(ws: Workspace | None, task: Task) -> tuple[str, np.ndarray] | None:
    """The workspace's active matrix for this task, if a valid one is saved."""
    saved = ((ws.get_setting(ACTIVE_PENALTY_SETTING, {}) if ws is not None else {}) or {}).get(task.name) or {}
    return stored_penalty(task, saved.get("name"), saved.get("matrix"))


def resolve_penalty(ws: Workspace | None, task: Task, penalty=None,
                    penalty_name: str | None = None) -> tuple[str, np.ndarray]:
    """(name, matrix) of the penalty matrix to use: the one given, else the workspace's active matrix for this task
    (set on the Penalties page), else the task's default."""
    if penalty is not None:
        source = "penalty matrix for the report"
        return penalty_name or "custom", refuse_costless_mistakes(
            check_penalty_matrix(penalty, task.num_classes, source), source)
    return saved_penalty(ws, task) or (DEFAULT_PENALTY_NAME, task.penalty())


def save_active_penalty(ws: Workspace, task: Task, name: str, matrix) -> list[list[float]]:
    """Make `matrix` the workspace's active matrix for this task (written only when it changed); returns its rows."""
    source = f"penalty matrix {name!r} for task {task.name!r}"
    rows = refuse_costless_mistakes(check_penalty_matrix(matrix, task.num_classes, source), source).tolist()
    saved = ws.get_setting(ACTIVE_PENALTY_SETTING, {}) or {}
    if saved.get(task.name) != {"name": name, "matrix": rows}:
        saved[task.name] = {"name": name, "matrix": rows}
        ws.set_setting(ACTIVE_PENALTY_SETTING, saved)
    return rows
