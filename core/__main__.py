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
# registers, with their one-line help, are listed here so that `python -m core runs list` imports that module only
# and `python -m core --help` imports none: importing every command module pulls in torch, scikit-learn and Captum,
# and made every command (and --help) wait 6-16 s before it started (tests/test_cli_hub.py checks this table, names
# and help, against what the modules register).
COMMANDS: dict[str, dict[str, str]] = {
    "core.data.cli": {
        "demo-data": "write the synthetic OCT demo dataset (Kermany file naming)",
        "inspect": "summarise a dataset: classes, counts, patients, image sizes, problems",
        "add-data": "add a dataset or test set to the workspace (a zip is stored de-identified)",
    },
    "core.audit.cli": {
        "audit": "audit a dataset: duplicates, patient leakage, image properties, shift, label issues",
    },
    "core.train.cli": {"train": "train a classifier (features or fine-tune mode)"},
    "core.infer.cli": {
        "predict": "run a trained model over a dataset and write its predictions table",
        "recalibrate": "refit a model's operating point on a labelled sample of a new site (a new run)",
    },
    "core.infer.imported_cli": {
        "import-predictions": "import scores from elsewhere (CSV or parquet) as a predictions table",
    },
    "core.infer.external_cli": {
        "export": "export a run's model to ONNX or TorchScript with the card that imports it",
        "import-model": "register an ONNX or TorchScript model trained elsewhere as a run",
    },
    "core.report.cli": {
        "evaluate": "compute every metric for a predictions table and write a JSON report",
        "report": "write the stakeholder report of a predictions table as PDF, HTML or JSON",
    },
    "core.explain.cli": {"explain": "occlusion or Grad-CAM maps for a run's decisions, with box scores"},
    "core.readers.cli": {
        "mrmc": "multi-reader multi-case (Obuchowski-Rockette / Hillis) analysis of reader-study readings",
        "studies": "list, rename, archive or delete studies",
    },
    "core.store.cli": {"doctor": "clean leftovers of killed processes and check the workspace registry"},
    "core.store.lifecycle_cli": {"runs": "list, rename, archive or delete runs"},
    "core.store.users_cli": {"users": "list users and locked sign-ins, unlock a sign-in, export the audit trail"},
}
COMMAND_MODULES = tuple(COMMANDS)


def _owner(argv: list[str]) -> str | None:
    """The one module that defines the command `argv` asks for; None for --help alone or an unknown command."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return next((m for m, commands in COMMANDS.items() if command in commands), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. Without `argv` every module registers its commands; with `argv` only the module of
    the command it names does, and when it names none (`--help`, a typo) the commands are listed from COMMANDS
    without importing any module (argparse then prints the list, or says which choices exist)."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Train, run and evaluate medical-image classifiers (Kermany et al. 2018 and beyond).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv is None:
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(sub)
        return parser
    owner = _owner(argv)
    if owner:
        importlib.import_module(owner).register(sub)
        return parser
    for commands in COMMANDS.values():
        for command, helptext in commands.items():
            sub.add_parser(command, help=helptext)  # listed only: no command is run without its module
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m core -- predict --run ...`: the `--` kept torchrun off our options
        argv = argv[1:]
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
