"""Command line: `python -m core <command> --help`."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from pathlib import Path

from core.errors import STORAGE_ERRNOS, InputError, storage_error

# Each module exposes register(subparsers); its parsers set `func` to a callable taking the args.
COMMAND_MODULES = (
    "core.data.cli",
    "core.audit.cli",
    "core.train.cli",
    "core.infer.cli",
    "core.report.cli",
    "core.explain.cli",
    "core.readers.cli",
    "core.store.cli",
    "core.store.lifecycle_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Train, run and evaluate medical-image classifiers (Kermany et al. 2018 and beyond).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
