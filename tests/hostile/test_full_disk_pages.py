"""A full disk met by a page outside the calls the page guards itself (issue 21, item 9): the app shows the
workspace's plain storage message, never a traceback. The disk fills at SQLite's level: every statement that
would write fails with SQLite's own error for a full disk ("database or disk is full")."""

from __future__ import annotations

import sqlite3

from core.store import workspace as workspace_module
from tests.apptest import signed_in_app


class FullDiskConnection(sqlite3.Connection):
    """A real connection on which writing rows fails the way SQLite fails on a full disk (SQLITE_FULL)."""

    @staticmethod
    def _check(sql: str) -> None:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        self._check(sql)
        return super().execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return super().executemany(sql, *args)


def test_reader_page_on_a_full_disk_shows_a_message_not_a_traceback(workspace, monkeypatch):
    monkeypatch.setenv("CORE_DEMO_PER_CLASS", "2")
    monkeypatch.setenv("CORE_DEMO_SIZE", "32")
    real_connect = sqlite3.connect

    def full_disk(database, *args, **kwargs):
        return real_connect(database, *args, factory=FullDiskConnection, **kwargs)

    monkeypatch.setattr(workspace_module.sqlite3, "connect", full_disk)  # the module object is sqlite3 itself
    at = signed_in_app(timeout=120)
    at.switch_page("../pages/reader_study.py").run()  # first visit: registering the demo test set must write
    assert not at.exception, [e.value for e in at.exception]
    assert any("workspace cannot be used" in e.value for e in at.error)
    assert any("writing to the registry failed: database or disk is full; the disk (or your quota) is full"
               in c.value for c in at.code), [c.value for c in at.code]
    assert workspace.list_datasets() == []  # nothing half-registered
