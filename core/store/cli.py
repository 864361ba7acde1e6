"""Command line for the workspace: `doctor` cleans leftovers of dead processes and checks the registry."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="clean leftovers of killed processes and check the workspace registry",
        description="Remove half-written extraction folders and temporary files of processes that are no longer "
                    "running; run SQLite's integrity check on the registry; list registry rows whose files are "
                    "gone and files no row names. A damaged registry is reported (with --fix: moved aside, never "
                    "deleted, and the newest good backup from <workspace>/backups restored, saying what may have "
                    "been lost since). Exit status 0 when healthy, 1 otherwise.")
    doctor.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: $CORE_WORKSPACE "
                                                                     "or ./workspace)")
    doctor.add_argument("--fix", action="store_true",
                        help="also remove registry rows of missing predictions and orphan predictions/uploads; "
                             "restore the newest good backup of a damaged registry")
    doctor.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from core.errors import DamagedRegistryError
    from core.store import Workspace
    from core.store.doctor import check_workspace

    try:
        ws = Workspace.open(args.workspace)
    except DamagedRegistryError:  # checked, reported and (with --fix) restored below
        ws = Workspace(Workspace.locate(args.workspace))
    report = check_workspace(ws, fix=args.fix)
    print(f"workspace: {ws.root}")
    for title, items in (("removed leftovers of dead processes", report.removed), ("problems", report.problems),
                         ("orphan files (no registry row names them)", report.orphans), ("fixed", report.fixed),
                         ("notes", report.notes)):
        print(f"{title}: {len(items) or 'none'}")
        for item in items[:100]:
            print(f"  - {item}")
    print("healthy" if report.healthy else "not healthy" + ("" if args.fix else " (see above; --fix removes "
                                                                              "orphans and dead rows and restores "
                                                                              "a damaged registry's backup)"))
    return 0 if report.healthy else 1
