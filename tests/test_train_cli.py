"""`python -m core train`: flags and --config to a RunConfig, the run folder and final metrics printed."""

import json

import pytest

from core.__main__ import main
from core.errors import InputError
from core.train import RunConfig
from core.train.cli import config_from_args
from tests.train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


def _args(argv):
    from core.__main__ import build_parser

    return build_parser().parse_args(["train", *argv])


def test_flags_override_a_config_file(tmp_path):
    RunConfig(data="/data/oct", mode="finetune", epochs=7, lr=0.01).save(tmp_path / "c.json")
    cfg = config_from_args(_args(["--config", str(tmp_path / "c.json"), "--epochs", "3", "--unfreeze", "2",
                                  "--task", "oct-kermany", "--binary", "CNV:NORMAL", "--no-augment"]))
    assert (cfg.epochs, cfg.lr, cfg.unfreeze, cfg.augmentation) == (3, 0.01, 2, False)
    assert cfg.task["name"] == "oct-kermany" and cfg.binary == "CNV:NORMAL"
    with pytest.raises(InputError, match="--data"):
        config_from_args(_args(["--mode", "features"]))
    with pytest.raises(InputError, match="--unfreeze"):
        config_from_args(_args(["--data", "x", "--unfreeze", "top"]))


def test_train_prints_run_folder_and_metrics(oct_folder, workspace, tmp_path, capsys):
    code = main(["train", "--data", str(oct_folder), "--task", "oct-kermany", "--backbone", "test_efficientnet",
                 "--mode", "features", "--epochs", "2", "--image-size", "32", "--per-class", "3",
                 "--balance", "weights", "--out", str(tmp_path / "cli-run"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and f"run folder: {tmp_path / 'cli-run'}" in out and "validation:" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert set(last["val"]) >= {"accuracy", "auroc", "loss"} and last["test"]["n"] == 8
    assert json.loads((tmp_path / "cli-run" / "status.json").read_text())["status"] == "succeeded"
    # The same folder again is refused (it would mix two runs); a missing dataset is a clear error (exit 2).
    assert main(["train", "--data", str(oct_folder), "--out", str(tmp_path / "cli-run")]) == 2
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err


def test_train_without_out_registers_the_run(oct_folder, workspace, capsys):
    code = main(["train", "--data", str(oct_folder), "--backbone", "test_efficientnet", "--epochs", "1",
                 "--image-size", "32", "--no-progress", "--name", "cli smoke"])
    assert code == 0
    (run,) = workspace.list_runs()
    assert run["status"] == "succeeded" and run["name"] == "cli smoke" and run["config"]["task"]["name"]
    assert run["best_metric_name"] == "auroc"
