"""Command line: `python -m core runs list|rename|archive|restore|delete` (core/store/lifecycle.py does the work)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    runs = subparsers.add_parser(
        "runs", help="list, rename, archive or delete training runs",
        description="Clean up the workspace's runs. delete removes a finished run and its folder; a run that other "
                    "records use (predictions, recalibrated runs, reports) is archived instead: hidden from the "
                    "dashboard's lists, kept on disk.")
    runs.add_argument("--workspace", type=Path, default=None,
                      help="workspace folder (default: $CORE_WORKSPACE or ./workspace)")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the runs, newest first")
    listing.add_argument("--all", action="store_true", help="archived runs too")
    listing.set_defaults(func=run_list)
    rename = sub.add_parser("rename", help="give a run a new name")
    rename.add_argument("run_id")
    rename.add_argument("name")
    rename.set_defaults(func=run_rename)
    for action, helptext in (("archive", "hide a run from the lists (kept on disk)"),
                             ("restore", "show an archived run again"),
                             ("delete", "delete a run and its folder (archived instead if other records use it)")):
        p = sub.add_parser(action, help=helptext)
        p.add_argument("run_id")
        p.set_defaults(func=run_archive if action != "delete" else run_delete, restore=action == "restore")


def _ws(args):
    from core.store import Workspace

    return Workspace.open(args.workspace)


def run_list(args: argparse.Namespace) -> int:
    ws = _ws(args)
    runs = ws.list_runs(include_archived=args.all)
    if not runs:
        print("no runs")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        print(f"{r['id']}  {r['status']:<9}  {when}  {r['name']}" + ("  [archived]" if r.get("archived") else ""))
    return 0


def run_rename(args: argparse.Namespace) -> int:
    from core.store.lifecycle import rename_run

    print(f"renamed {args.run_id} to {rename_run(_ws(args), args.run_id, args.name)!r}")
    return 0


def run_archive(args: argparse.Namespace) -> int:
    from core.store.lifecycle import archive_run

    archive_run(_ws(args), args.run_id, restore=args.restore)
    print(f"{'restored' if args.restore else 'archived'} {args.run_id}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from core.store.lifecycle import delete_run

    removal = delete_run(_ws(args), args.run_id)
    if removal.outcome == "archived":
        print(f"archived {args.run_id} instead of deleting it: used by " + "; ".join(removal.users))
    else:
        print(f"deleted {args.run_id}" + (f" ({', '.join(removal.removed_files)})" if removal.removed_files else ""))
    return 0
