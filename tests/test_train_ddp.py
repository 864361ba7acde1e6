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
    forked_gloo_ranks,
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


def _train_cli(rank: int, config_file: str, out: str, workspace_root: str | None = None) -> int:
    """One process of `torchrun -m core train` (forked, after torchrun's environment is set)."""
    from core.__main__ import main

    if workspace_root:
        os.environ["CORE_WORKSPACE"] = workspace_root
    return main(["train", "--config", config_file, "--out", out, "--no-progress"])


def _feature_cache(workspace) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Every entry of the workspace's feature cache, by file name."""
    from core.train.features import FeatureCache

    cache = FeatureCache(workspace.cache_dir / "features")
    return {p.name: cache.load(p.name.removesuffix(".safetensors")) for p in sorted(cache.root.glob("*.safetensors"))}


def _shards(workspace) -> list[str]:
    return sorted(p.name for p in (workspace.cache_dir / "features").glob(".*"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")
def test_two_ranks_extract_into_the_single_process_feature_cache(tmp_path, workspace):
    from core.store import Workspace

    data = make_kermany_folder(tmp_path / "oct", per_class=5, test_per_class=2)  # 28 images: odd shares per view
    cfg = RunConfig(data=str(data), mode="features", device="cpu", **TINY)
    assert cfg.views >= 1  # view 0 and acquisition views: one shared extraction per cache entry
    cfg.save(tmp_path / "config.json")
    results = forked_gloo_ranks(_train_cli, [(str(tmp_path / "config.json"), str(tmp_path / "ddp"))] * 2)
    assert results == {0: 0, 1: 0}, results
    assert json.loads((tmp_path / "ddp" / "status.json").read_text())["status"] == "succeeded"
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["head_fit"] == "logistic"  # rank 0 fitted the head, once
    per_rank = summary["feature_cache"]["images_per_rank"]  # the work was shared: 28 + 3 x 20 images in all
    assert sum(per_rank) == summary["feature_cache"]["computed"] == 28 + 20 * cfg.views and min(per_rank) > 0
    assert _shards(workspace) == []  # every shard merged and removed

    shared = _feature_cache(workspace)
    single_ws = Workspace.open(tmp_path / "single-workspace")
    run_training(cfg, None, single_ws)
    single = _feature_cache(single_ws)
    assert shared.keys() == single.keys()  # the same keys: the same data, backbone, views and arithmetic
    # View 0 holds all 28 images; each acquisition view the 20 the probe is fitted on.
    assert sorted(len(ids) for ids, _ in single.values()) == [20] * cfg.views + [28]
    for name, (ids, features) in single.items():
        shared_ids, shared_features = shared[name]
        assert shared_ids == ids  # the single process's image order, not rank order
        assert float((shared_features - features).abs().max()) <= 1e-6, name


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")
def test_a_failing_rank_fails_every_rank_and_leaves_the_feature_cache_as_it_was(tmp_path, workspace, capfd):
    from core.train.features import FeatureCache

    data = make_kermany_folder(tmp_path / "oct", per_class=3, test_per_class=1)
    cfg = RunConfig(data=str(data), mode="features", device="cpu", views=0, **TINY)
    cfg.save(tmp_path / "config.json")
    # An entry already in the cache stays byte for byte as it was.
    FeatureCache(workspace.cache_dir / "features").save("0" * 64, ["a", "b"], torch.ones((2, 3)), {"note": "kept"})
    before = {p.name: p.read_bytes() for p in (workspace.cache_dir / "features").iterdir()}
    # Rank 1's node sees another workspace, where a file stands in the way of the feature cache: it cannot write
    # its shard, while rank 0 extracts and writes its own.
    elsewhere = tmp_path / "rank-1-workspace"
    (elsewhere / "cache").mkdir(parents=True)
    (elsewhere / "cache" / "features").write_text("not a folder")
    capfd.readouterr()

    args = (str(tmp_path / "config.json"), str(tmp_path / "ddp"))
    results = forked_gloo_ranks(_train_cli, [(*args, str(workspace.root)), (*args, str(elsewhere))])
    assert results == {0: 2, 1: 1}, results  # rank 0 reports the failure; rank 1 ends quietly
    err = capfd.readouterr().err
    # Said once, naming the rank and why.
    assert err.count("error: rank 1: cannot write its share of the features into ") == 1, err
    status = json.loads((tmp_path / "ddp" / "status.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("rank 1: ")
    after = {p.name: p.read_bytes() for p in (workspace.cache_dir / "features").iterdir()}
    assert after == before  # nothing merged, nothing half-written, rank 0's shard removed
    assert not (tmp_path / "ddp" / "checkpoint").exists()
