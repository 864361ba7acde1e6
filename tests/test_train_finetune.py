"""Fine-tune mode end to end on a tiny model: stages, augmentation, schedule, accumulation, resume after cancel."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.models import load_checkpoint
from core.train import RunConfig, read_events, run_training
from core.train.finetune import set_train_mode
from core.train.resume import RESUME_DIR
from tests.train_fixtures import (
    TINY,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


def _finetune(data, **kw):
    return RunConfig(data=str(data), mode="finetune", **{**TINY, "batch_size": 6, "epochs": 2, **kw})


def test_finetune_end_to_end_with_augmentation_and_accumulation(oct_folder, workspace, tmp_path):
    cfg = _finetune(oct_folder, accumulate=2, unfreeze=1, warmup_epochs=0.5,
                    augment={"rotate_deg": 5.0, "vflip": True})
    summary = run_training(cfg, tmp_path / "run", workspace)
    assert summary["epochs_run"] == 2 and summary["trainable_stages"]  # only the last stage (and the head)
    model, card = load_checkpoint(tmp_path / "run")
    assert card["training"]["mode"] == "finetune" and card["preprocessing"]["input_size"] == [3, 32, 32]
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    steps = read_events(tmp_path / "run", "step")
    assert steps and all(0 < s["lr"] <= cfg.lr for s in steps) and steps[-1]["step"] == steps[-1]["total_steps"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["accumulate"] == 2


def test_schedule_warms_up_then_decays():
    from core.train.recipe import build_optimizer, build_scheduler

    cfg = RunConfig(data="x", mode="finetune", lr=1e-3, epochs=4, warmup_epochs=1.0)
    optimizer = build_optimizer(torch.nn.Linear(3, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg, updates_per_epoch=10)
    lrs = []
    for update in range(1, 41):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step_update(num_updates=update)
    assert lrs[0] == pytest.approx(1e-5) and lrs[0] < lrs[5] < lrs[9]  # linear warm-up over the first epoch
    assert max(lrs) == pytest.approx(1e-3, rel=0.05) and lrs[-1] < 0.05 * max(lrs)  # cosine decay to 1%
    flat = cfg.replace(schedule="constant", warmup_epochs=0.0)
    constant = build_scheduler(build_optimizer(torch.nn.Linear(3, 2), flat), flat, 10)
    for update in range(1, 41):
        constant.step_update(num_updates=update)
        assert constant.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_frozen_stages_keep_batchnorm_statistics():
    from core.models import create_model, unfreeze_last_stages

    model = create_model("test_efficientnet", 3, pretrained=False)
    unfreeze_last_stages(model, 1)
    set_train_mode(model, "train")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    frozen = [m for m in bns if not any(p.requires_grad for p in m.parameters(recurse=False))]
    assert frozen and all(not m.training for m in frozen)
    assert any(m.training for m in bns)
    set_train_mode(model, "frozen")
    assert all(not m.training for m in bns) and model.training


def test_cancel_then_resume_matches_an_uninterrupted_run(oct_folder, workspace, tmp_path):
    cfg = _finetune(oct_folder, epochs=3, patience=0, augmentation=True, seed=5)
    run_training(cfg, tmp_path / "straight", workspace)

    interrupted = tmp_path / "interrupted"

    def cancel_in_epoch_three(event):
        if event["type"] == "step" and event["epoch"] == 3:
            (interrupted / "cancel").write_text("test")

    first = run_training(cfg, interrupted, workspace, listener=cancel_in_epoch_three)
    assert first["cancelled"] and (interrupted / RESUME_DIR / "state.pt").exists()
    assert (interrupted / "checkpoint" / "model.safetensors").exists()  # cancel saves what it has
    (interrupted / "cancel").unlink()
    resumed = run_training(json.loads((interrupted / "config.json").read_text()), interrupted, workspace,
                           resume=True)
    assert not resumed["cancelled"] and resumed["epochs_run"] == 3
    a = load_file(str(tmp_path / "straight" / RESUME_DIR / "model.safetensors"))
    b = load_file(str(interrupted / RESUME_DIR / "model.safetensors"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    epochs = [e["epoch"] for e in read_events(interrupted, "epoch") if e["split"] == "train"]
    assert epochs == [1, 2, 3, 3]  # the cancelled third epoch, then the resumed one


def test_resume_without_saved_state_starts_afresh(oct_folder, workspace, tmp_path):
    summary = run_training(_finetune(oct_folder, epochs=1), tmp_path / "r", workspace, resume=True)
    assert summary["epochs_run"] == 1


def test_no_validation_split_keeps_last_epoch(oct_folder, workspace, tmp_path):
    summary = run_training(_finetune(oct_folder, epochs=1, val_fraction=0.0, balance="weights"), tmp_path / "r",
                           workspace)
    assert summary["best_epoch"] == 1 and summary["val"] == {} and np.isfinite(summary["test"]["loss"])
