"""torchrun with 2 CPU processes (gloo, DistributedDataParallel) trains the same model as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.models import create_model
from core.train import RunConfig, read_events, run_training
from core.train.resume import RESUME_DIR
from tests.train_fixtures import (
    TINY,
    make_kermany_folder,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")
def test_two_gloo_processes_match_single_process_training(tmp_path, workspace):
    data = make_kermany_folder(tmp_path / "oct", per_class=6, test_per_class=1)
    # Same global batch (8 = 2 x 4); SGD (Adam would amplify round-off in near-zero gradients); BatchNorm
    # statistics frozen, because PyTorch's SyncBatchNorm has no CPU kernel; no augmentation randomness.
    cfg = RunConfig(data=str(data), mode="finetune", epochs=2, optimizer="sgd", lr=0.05, weight_decay=0.0,
                    warmup_epochs=0.0, bn="frozen", augmentation=False, patience=0, device="cpu",
                    **{**TINY, "batch_size": 8})
    config_file = tmp_path / "config.json"
    cfg.save(config_file)
    single = run_training(cfg, tmp_path / "single", workspace)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "CORE_WORKSPACE": str(workspace.root), "TORCH_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "core", "train", "--config", str(config_file), "--out", str(tmp_path / "ddp"), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    status = json.loads((tmp_path / "ddp" / "status.json").read_text())
    assert status["status"] == "succeeded"
    assert next(e for e in read_events(tmp_path / "ddp", "status") if "world_size" in e)["world_size"] == 2
    one = load_file(str(tmp_path / "single" / RESUME_DIR / "model.safetensors"))
    two = load_file(str(tmp_path / "ddp" / RESUME_DIR / "model.safetensors"))
    assert one.keys() == two.keys()
    worst = max(float((one[k].float() - two[k].float()).abs().max()) for k in one)
    assert worst < 1e-4, f"largest weight difference {worst}"
    # Training moved the weights far more than the two runs differ (not two untouched models compared).
    torch.manual_seed(cfg.seed)
    initial = create_model(cfg.backbone, 4, pretrained=cfg.pretrained).state_dict()
    moved = max(float((one[k].float() - initial[k].float()).abs().max()) for k in one)
    assert single["epochs_run"] == 2 and moved > 100 * worst
