"""Workspace on disk and its SQLite registry."""

from core.store.workspace import RUN_STATUSES, Workspace, new_id

__all__ = ["RUN_STATUSES", "Workspace", "new_id"]
