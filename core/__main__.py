"""Command line: `python -m core <command> --help`."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from pathlib import Path

from core.errors import STORAGE_ERRNOS, InputError, storage_error

# Each module exposes register(subparsers); its parsers set `func` to a callable taking the args. The commands each
# registers are listed here so that `python -m core runs list` imports that module only: importing every command
# module pulls in torch, scikit-learn and Captum, and made every command wait 8 s before it started
# (tests/test_cli_hub.py checks this table against what the modules register).
COMMANDS = {
    "core.data.cli": ("demo-data", "inspect", "add-data"),
    "core.audit.cli": ("audit",),
    "core.train.cli": ("train",),
    "core.infer.cli": ("predict", "recalibrate"),
    "core.report.cli": ("evaluate", "report"),
    "core.explain.cli": ("explain",),
    "core.readers.cli": ("mrmc", "studies"),
    "core.store.cli": ("doctor",),
    "core.store.lifecycle_cli": ("runs",),
    "core.store.users_cli": ("users",),
}
COMMAND_MODULES = tuple(COMMANDS)


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    """The one module that defines the command asked for, or every module (for --help or an unknown command)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    owner = next((m for m, commands in COMMANDS.items() if command in commands), None)
    return (owner,) if owner else COMMAND_MODULES


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser: with `argv`, only the module of the command it names registers."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Train, run and evaluate medical-image classifiers (Kermany et al. 2018 and beyond).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in (COMMAND_MODULES if argv is None else _modules_for(argv)):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.OperationalError) as exc:
        if isinstance(exc, sqlite3.OperationalError) or exc.errno in STORAGE_ERRNOS:
            workspace = Path(os.environ.get("CORE_WORKSPACE") or "workspace").expanduser().resolve()
            target = getattr(exc, "filename", None)
            exc = storage_error(exc, workspace, f"writing {target}" if target else "storing the result")
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
