"""Cleaning up reader studies: rename, archive, restore, delete, by the rules core/store/lifecycle.py sets for runs
and test sets (who may, confirmation in the UI, and a study whose answers exist is archived, never destroyed:
clinicians' gradings are data no one can make again)."""

from __future__ import annotations

import sqlite3

from core.readers.schema import ensure_schema
from core.readers.study import get_study, refuse_taken_name
from core.store import Workspace
from core.store.access import SHELL, Actor, is_formal_study, mark_formal_study
from core.store.lifecycle import (Removal, archive_if_used, check_permission, clean_name, record_change,
                                  record_removal)

KIND = "reader study"


def users_of_study(ws: Workspace, study_id: str) -> list[str]:
    """What would be lost with the study: its readers' answers, the readings it produced, the aided study it is
    part of."""
    with ws.connect() as con:
        ensure_schema(con)
        answers = con.execute("SELECT COUNT(*) AS n, COUNT(DISTINCT reader_id) AS readers FROM answers "
                              "WHERE study_id=?", (study_id,)).fetchone()
        readers = con.execute("SELECT COUNT(*) FROM readers WHERE study_id=?", (study_id,)).fetchone()[0]
        readings = con.execute("SELECT COUNT(*) FROM readings WHERE source=?", (f"study:{study_id}",)).fetchone()[0]
        try:
            aided = con.execute("SELECT id FROM aided_studies WHERE unaided_study_id=? OR aided_study_id=?",
                                (study_id, study_id)).fetchall()
        except sqlite3.OperationalError:  # no aided study was ever created in this workspace
            aided = []
    users = []
    if answers["n"]:
        users.append(f"{answers['n']} answer(s) by {answers['readers']} reader(s)")
    elif readers:
        users.append(f"{readers} reader(s) joined")
    if readings:
        users.append(f"{readings} reading(s) in the readers' results")
    users += [f"aided study {row[0]}" for row in aided]
    return users


def rename_study(ws: Workspace, study_id: str, name: str, *, actor: Actor = SHELL) -> str:
    """A new name; readers pick a study by its name, so two studies never share one."""
    before = get_study(ws, study_id).name
    check_permission(actor, "rename", KIND, study_id)
    name = clean_name(name)
    with ws.connect() as con:
        refuse_taken_name(con, name, other_than=study_id)
    ws.rename("reader_studies", study_id, name)
    record_change(ws, actor, "rename", KIND, study_id, {"from": before, "to": name})
    return name


def archive_study(ws: Workspace, study_id: str, *, actor: Actor = SHELL, restore: bool = False) -> None:
    """Hide a study from the pickers and close it to readers (answers kept); restore=True opens it again."""
    get_study(ws, study_id)
    check_permission(actor, "restore" if restore else "archive", KIND, study_id)
    ws.set_archived("reader_studies", study_id, not restore)
    record_change(ws, actor, "restore" if restore else "archive", KIND, study_id)


def delete_study(ws: Workspace, study_id: str, *, actor: Actor = SHELL) -> Removal:
    """Delete a study no reader has joined (its image list goes with it); a study with readers, answers or a
    place in an aided study is archived instead."""
    get_study(ws, study_id)
    check_permission(actor, "delete", KIND, study_id)
    if archived := archive_if_used(study_id, users_of_study(ws, study_id),
                                   lambda: ws.set_archived("reader_studies", study_id, True)):
        return record_removal(ws, actor, KIND, archived)
    if is_formal_study(ws, study_id):
        mark_formal_study(ws, study_id, formal=False, actor=actor)
    with ws.connect() as con:
        con.execute("DELETE FROM study_items WHERE study_id=?", (study_id,))
        con.execute("DELETE FROM reader_studies WHERE id=?", (study_id,))
    return record_removal(ws, actor, KIND, Removal(study_id, "deleted"))
