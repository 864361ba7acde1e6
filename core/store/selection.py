"""The selection (run, test set, threshold) each user last worked on, kept in the workspace so that user's next page
load starts from it: one registry setting per user, never shared, written only when it changed."""

from __future__ import annotations

from typing import Any

from core.store.workspace import Workspace

SETTING_PREFIX = "selection:"  # + the signed-in user's id


def _setting(user_id: str) -> str:
    return f"{SETTING_PREFIX}{user_id}"


def saved_selection(ws: Workspace, user_id: str) -> dict[str, Any]:
    """What `user_id` last selected ({} when nothing yet); keys absent or None were never chosen."""
    saved = ws.get_setting(_setting(user_id), {})
    return dict(saved) if isinstance(saved, dict) else {}


def save_selection(ws: Workspace, user_id: str, values: dict[str, Any]) -> bool:
    """Merge `values` into `user_id`'s saved selection; the registry is written only when that changes it (a page
    that reports the same threshold again costs one read, no write). Returns whether it was written."""
    saved = saved_selection(ws, user_id)
    merged = {**saved, **values}
    if merged == saved:
        return False
    ws.set_setting(_setting(user_id), merged)
    return True
