"""`python -m core`: the command table names what each module registers, and a command imports its module only."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from core.__main__ import COMMANDS, build_parser


def test_the_command_table_is_what_each_module_registers():
    for module, commands in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers(dest="command")
        importlib.import_module(module).register(sub)
        assert tuple(sub.choices) == tuple(commands), module
        # `--help` lists each command's one-line help from the table: it must be the help the module registers.
        assert {a.dest: a.help for a in sub._choices_actions} == commands, module
    assert set(build_parser().parse_args(["runs", "list"]).__dict__) >= {"command", "func"}


def test_a_light_command_starts_without_torch(workspace):
    # Every command used to import every command module (torch, scikit-learn, Captum): `runs list` waited 8 s.
    code = ("import sys; from core.__main__ import main; "
            f"rc = main(['runs', '--workspace', {str(workspace.root)!r}, 'list']); "
            "print(rc, 'torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stderr
    every = subprocess.run([sys.executable, "-m", "core", "--help"], capture_output=True, text=True, timeout=120)
    assert every.returncode == 0 and all(c in every.stdout for commands in COMMANDS.values() for c in commands)


def test_help_lists_every_command_without_importing_any():
    # `python -m core --help` imported every command module (torch, scikit-learn, Captum) and took 6-16 s.
    code = ("import sys, contextlib, io; from core.__main__ import COMMANDS, main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit as e: rc = e.code\n"
            "print(rc, 'torch' in sys.modules, 'sklearn' in sys.modules, any(m in sys.modules for m in COMMANDS))\n"
            "print(all(h.split()[0] in out.getvalue() for c in COMMANDS.values() for h in c.values()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["0", "False", "False", "False", "True"], out.stderr
