"""Command line for dashboard users: `python -m core users list|unlock|trail` (core/store/access.py and
core/store/audit_trail.py do the work; the command line runs as the server's shell)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "users", help="list users and locked sign-ins, unlock a sign-in, export the audit trail",
        description="Dashboard users of a workspace. A name (or a browser) is locked after repeated failed "
                    "sign-ins; `unlock` ends the lock now. `trail` writes the audit trail as CSV.")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: $CORE_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="users, their roles, and the sign-ins locked now").set_defaults(func=run_list)
    unlock = sub.add_parser("unlock", help="end a sign-in lock now (a user name, or a client with --client)")
    unlock.add_argument("name", help="the user name as typed on the sign-in form (case ignored), or the client")
    unlock.add_argument("--client", action="store_true", help="NAME is a client (as `users list` shows it)")
    unlock.set_defaults(func=run_unlock)
    trail = sub.add_parser("trail", help="the audit trail as CSV (newest first)")
    trail.add_argument("--out", type=Path, default=None, help="CSV file to write (default: standard output)")
    trail.add_argument("--user", default=None, help="only this user's entries")
    trail.add_argument("--action", default=None, help="only this action")
    trail.add_argument("--since", default=None, help="from this date or time (local)")
    trail.set_defaults(func=run_trail)


def _workspace(args: argparse.Namespace):
    from core.store import Workspace

    return Workspace.open(args.workspace)


def run_list(args: argparse.Namespace) -> int:
    from core.store.access import SHELL, list_locks, list_users

    ws = _workspace(args)
    print(f"workspace: {ws.root}")
    for user in list_users(ws):
        print(f"  {user['user_id']}  {user['role']}{'' if user['password'] else '  (organisation sign-on only)'}")
    locks = list_locks(ws, actor=SHELL)
    print(f"locked sign-ins: {len(locks) or 'none'}")
    for lock in locks:
        print(f"  {lock['kind']} {lock['key']}: {lock['minutes_left']} more minute(s)")
    return 0


def run_unlock(args: argparse.Namespace) -> int:
    from core.store.access import ACCOUNT, CLIENT, SHELL, unlock

    was = unlock(_workspace(args), args.name, CLIENT if args.client else ACCOUNT, actor=SHELL)
    print(f"unlocked {args.name}" if was else f"{args.name} was not locked (its failed sign-ins are forgotten)")
    return 0


def run_trail(args: argparse.Namespace) -> int:
    from core.store.access import SHELL
    from core.store.audit_trail import trail_csv

    data = trail_csv(_workspace(args), actor=SHELL, user=args.user, action=args.action, since=args.since)
    if args.out is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        args.out.write_bytes(data)
        print(f"wrote {args.out}")
    return 0
