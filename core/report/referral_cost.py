"""The price of a referral to a reader, per true class, kept as a workspace setting beside the active penalty
matrix: the Penalties page sets it; the Performance page and the exported report price referrals with it."""

from __future__ import annotations

import numpy as np

from core.data.tasks import Task
from core.errors import InputError
from core.metrics.penalties import REFERRAL_COST_SHARE, check_referral_cost, default_referral_cost
from core.store import Workspace

# The workspace setting: {task name: [cost per true class, in class order]}.
REFERRAL_COST_SETTING = "referral_cost"
DEFAULT_REFERRAL_NOTE = (f"default: {REFERRAL_COST_SHARE:g} x the cheapest mistake of the penalty matrix, for every "
                         "true class")


def saved_referral_cost(ws: Workspace | None, task: Task) -> np.ndarray | None:
    """The workspace's referral cost for this task, if a valid one is saved (None for one saved for another class
    list, so callers fall back rather than break)."""
    saved = ((ws.get_setting(REFERRAL_COST_SETTING, {}) if ws is not None else {}) or {}).get(task.name)
    if saved is None:
        return None
    try:
        return check_referral_cost(saved, task.num_classes)
    except InputError:
        return None


def resolve_referral_cost(ws: Workspace | None, task: Task, penalty, given=None) -> tuple[np.ndarray, str]:
    """(cost per true class, where it comes from): the one given, else the workspace's, else the default for the
    penalty matrix in use."""
    if given is not None:
        return check_referral_cost(given, task.num_classes, "referral cost for the report"), "given"
    saved = saved_referral_cost(ws, task)
    if saved is not None:
        return saved, "set on the Penalties page"
    return default_referral_cost(penalty), DEFAULT_REFERRAL_NOTE


def save_referral_cost(ws: Workspace, task: Task, cost) -> list[float]:
    """Make `cost` the workspace's referral cost for this task (written only when it changed); returns it."""
    values = check_referral_cost(cost, task.num_classes, f"referral cost for task {task.name!r}").tolist()
    saved = ws.get_setting(REFERRAL_COST_SETTING, {}) or {}
    if saved.get(task.name) != values:
        saved[task.name] = values
        ws.set_setting(REFERRAL_COST_SETTING, saved)
    return values


def clear_referral_cost(ws: Workspace, task: Task) -> None:
    """Back to the default referral cost for this task."""
    saved = ws.get_setting(REFERRAL_COST_SETTING, {}) or {}
    if task.name in saved:
        del saved[task.name]
        ws.set_setting(REFERRAL_COST_SETTING, saved)
