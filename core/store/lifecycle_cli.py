"""Command line: `python -m core runs list|rename|archive|restore|delete` (core/store/lifecycle.py does the work),
and the same actions for any other record kind through add_lifecycle_command (reader studies: core/readers/cli.py).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.store import lifecycle


@dataclass(frozen=True)
class LifecycleCommands:
    """One record kind's clean-up actions, each taking the workspace first."""

    command: str                          # "runs", "studies"
    noun: str                             # "run", "reader study"
    used_by: str                          # what makes a record "used" (it is archived, not deleted)
    listing: Callable                     # (ws, include_archived) -> [record dicts: id, name, created, ...]
    rename: Callable
    archive: Callable                     # (ws, id, restore=False)
    delete: Callable                      # (ws, id) -> core.store.lifecycle.Removal
    status: Callable[[dict], str] = lambda record: ""


def add_lifecycle_command(subparsers, kind: LifecycleCommands) -> None:
    """`python -m core <command> list|rename|archive|restore|delete` for one record kind."""
    parser = subparsers.add_parser(
        kind.command, help=f"list, rename, archive or delete {kind.command}",
        description=f"Clean up the workspace's {kind.command}. delete removes a {kind.noun} from the workspace; "
                    f"a {kind.noun} that {kind.used_by} use is archived instead: hidden from the dashboard's "
                    "lists, kept.")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: $CORE_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest=f"{kind.command}_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help=f"the {kind.command}, newest first")
    listing.add_argument("--all", action="store_true", help=f"archived {kind.command} too")
    listing.set_defaults(func=lambda args: _list(kind, args))
    rename = sub.add_parser("rename", help=f"give a {kind.noun} a new name")
    rename.add_argument("record_id", metavar="ID")
    rename.add_argument("name")
    rename.set_defaults(func=lambda args: _rename(kind, args))
    for action, helptext in (("archive", f"hide a {kind.noun} from the lists (kept)"),
                             ("restore", f"show an archived {kind.noun} again"),
                             ("delete", f"delete a {kind.noun} (archived instead if it is in use)")):
        p = sub.add_parser(action, help=helptext)
        p.add_argument("record_id", metavar="ID")
        p.set_defaults(func=(lambda args: _delete(kind, args)) if action == "delete" else
                       (lambda args, restore=action == "restore": _archive(kind, args, restore)))


def _ws(args):
    from core.store import Workspace

    return Workspace.open(args.workspace)


def _list(kind: LifecycleCommands, args: argparse.Namespace) -> int:
    records = kind.listing(_ws(args), args.all)
    if not records:
        print(f"no {kind.command}")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        status = kind.status(r)
        print(f"{r['id']}  {status + '  ' if status else ''}{when}  {r['name']}"
              + ("  [archived]" if r.get("archived") else ""))
    return 0


def _rename(kind: LifecycleCommands, args: argparse.Namespace) -> int:
    print(f"renamed {args.record_id} to {kind.rename(_ws(args), args.record_id, args.name)!r}")
    return 0


def _archive(kind: LifecycleCommands, args: argparse.Namespace, restore: bool) -> int:
    kind.archive(_ws(args), args.record_id, restore=restore)
    print(f"{'restored' if restore else 'archived'} {args.record_id}")
    return 0


def _delete(kind: LifecycleCommands, args: argparse.Namespace) -> int:
    removal = kind.delete(_ws(args), args.record_id)
    if removal.outcome == "archived":
        print(f"archived {args.record_id} instead of deleting it: used by " + "; ".join(removal.users))
    else:
        print(f"deleted {args.record_id}" + (f" ({', '.join(removal.removed_files)})" if removal.removed_files
                                             else ""))
    return 0


def _runs() -> LifecycleCommands:
    return LifecycleCommands("runs", "run", "predictions, recalibrated runs or reports",
                             lambda ws, everything: ws.list_runs(include_archived=everything),
                             lifecycle.rename_run, lifecycle.archive_run, lifecycle.delete_run,
                             status=lambda r: f"{r['status']:<9}")


def register(subparsers) -> None:
    add_lifecycle_command(subparsers, _runs())
