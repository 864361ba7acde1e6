"""`inspect` and `demo-data` subcommands, driven through core.data.cli.register on a bare parser."""

from __future__ import annotations

import argparse

import pytest

from core.data import cli
from core.errors import InputError
from tests._data_files import image_folder, write_image


def _run(argv):
    parser = argparse.ArgumentParser(prog="core")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_inspect_prints_counts_patients_sizes_and_problems(tmp_path, capsys):
    root = tmp_path / "oct"
    image_folder(root, {"CNV": 2, "NORMAL": 1}, split="train", name=lambda c, i: f"{c}-{i}-1.jpeg", size=(30, 20))
    image_folder(root, {"CNV": 1, "NORMAL": 1}, split="test", name=lambda c, i: f"{c}-{i}-2.jpeg", size=(40, 10))
    (root / "test" / "NORMAL" / "NORMAL-9-9.jpeg").write_text("broken")
    assert _run(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert "task: oct-kermany" in out and "classes: CNV, DME, DRUSEN, NORMAL" in out
    assert "images: 5    patients: 2" in out
    assert "train    2    0       0       1      3" in out
    assert "patients per split: train 2, test 1" in out
    assert "width min/median/max 30/30/40 px, height 10/20/20 px (2 distinct sizes)" in out
    assert "patient(s) appear in both train and test" in out
    assert "problems: 1" in out and "NORMAL-9-9.jpeg" in out


def test_inspect_with_task_and_fingerprint(tmp_path, capsys):
    root = image_folder(tmp_path / "d", {"NORMAL": 1, "BACTERIAL": 1, "VIRAL": 1})
    assert _run(["inspect", str(root), "--task", "cxr-kermany", "--fingerprint"]) == 0
    out = capsys.readouterr().out
    assert "task: cxr-kermany" in out and "fingerprint: " in out and "problems: none" in out


def test_inspect_reports_input_errors(tmp_path):
    (tmp_path / "m.csv").write_text("path,comment\na.png,x\n")
    write_image(tmp_path / "a.png")
    with pytest.raises(InputError, match="missing label column"):
        _run(["inspect", str(tmp_path / "m.csv")])


def test_help_texts(capsys):
    for command in ("inspect", "demo-data"):
        with pytest.raises(SystemExit) as exc:
            _run([command, "--help"])
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "image sizes" in out and "--per-class" in out and "synthetic" in out


def test_demo_data_writes_a_loadable_dataset(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _run(["demo-data", "--out", str(out), "--per-class", "2", "--test-per-class", "1",
                 "--size", "32", "--seed", "1"]) == 0
    assert "synthetic demo dataset written" in capsys.readouterr().out
    from core.data import load_dataset

    ds = load_dataset(out)
    assert ds.task.name == "oct-kermany"
    assert ds.class_counts().loc["train"].tolist() == [2, 2, 2, 2]
    assert ds.class_counts().loc["test"].tolist() == [1, 1, 1, 1]


@pytest.mark.slow  # assembling every command imports torch, timm and captum
def test_through_the_core_command_line(tmp_path, capsys):
    import core.__main__ as entry

    entry.build_parser()  # every command module imports
    root = image_folder(tmp_path / "d", {"a": 1, "b": 2})
    assert entry.main(["inspect", str(root)]) == 0
    assert "images: 3" in capsys.readouterr().out
    assert entry.main(["inspect", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
