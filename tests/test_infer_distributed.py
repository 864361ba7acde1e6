"""`predict` under torchrun (2 CPU processes, gloo): each rank scores its shard, rank 0 writes the one table, which is
the single-process table; a failure on any rank fails every rank and writes nothing (two forked ranks: the
documented command's start-up is paid once, by the first test)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.infer import predict, read_predictions
from core.train import RunConfig, run_training
from tests.train_fixtures import (
    OCT_CLASSES,
    TINY,
    forked_gloo_ranks,
    make_kermany_folder,
    one_torch_thread,  # noqa: F401 (autouse fixture)
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")


def _torchrun(workspace, *args: str) -> subprocess.CompletedProcess:
    """The documented command, with this interpreter's torch.distributed.run (the project's environment)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CORE_WORKSPACE": str(workspace.root), "TORCH_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "core", "--", "predict", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _leftovers(workspace) -> list[str]:
    return sorted(p.name for p in workspace.predictions_dir.glob(".*"))


@pytest.fixture
def tiny_run(tmp_path, workspace):
    """A tiny features-mode run and a test set of 11 images (odd: the two shards differ in size)."""
    data = make_kermany_folder(tmp_path / "oct", per_class=4, test_per_class=3)
    (data / "test" / OCT_CLASSES[-1] / sorted(os.listdir(data / "test" / OCT_CLASSES[-1]))[0]).unlink()
    run_dir = tmp_path / "run"
    run_training(RunConfig(data=str(data), mode="features", epochs=2, device="cpu", **TINY), run_dir, workspace)
    return run_dir, data / "test"


@pytest.mark.slow
def test_two_processes_write_the_single_process_table(tiny_run, workspace, tmp_path):
    run_dir, test = tiny_run
    out = tmp_path / "P.parquet"
    proc = _torchrun(workspace, "--run", str(run_dir), "--data", str(test), "--out", str(out), "--batch-size", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("11 images; table cached at") == 1  # rank 0 reports, the other rank says nothing
    assert "scored by 2 processes: 6, 5 images" in proc.stdout

    shared, meta = read_predictions(out)
    assert meta["world_size"] == 2 and meta["images_per_rank"] == [6, 5]
    records = workspace.list_predictions()
    assert len(records) == 1 and records[0]["n_rows"] == 11  # registered once
    assert read_predictions(records[0]["path"])[0].equals(shared)
    assert _leftovers(workspace) == []  # shards (and their temporary files) are gone

    single = predict(run_dir, test, workspace, use_cache=False, batch_size=4, num_workers=0)
    assert single.attrs["meta"]["world_size"] == 1 and single.attrs["meta"]["images_per_rank"] == [11]
    assert shared["image_id"].tolist() == single["image_id"].tolist()  # the dataset's order, not rank order
    assert shared.columns.tolist() == single.columns.tolist()
    probs = [c for c in shared.columns if c.startswith("prob_")]
    assert np.abs(shared[probs].to_numpy() - single[probs].to_numpy()).max() <= 1e-6
    assert shared.drop(columns=probs).equals(single.drop(columns=probs))
    assert sum(meta["images_per_rank"]) == len(single) == 11


def _rank(rank: int, root: str, run_dir: str, data: str) -> tuple:
    """One process of a 2-process job (forked by forked_gloo_ranks, with the environment torchrun would set)."""
    from core.errors import InputError
    from core.infer.distributed import predict_shared

    try:
        frame = predict_shared(run_dir, data, root, device="cpu", num_workers=0)
        return "ok", None if frame is None else len(frame)
    except InputError as exc:
        return "failed", (str(exc), getattr(exc, "echo", True))


def _two_ranks(workspace, run_dir, data_by_rank) -> dict:
    return forked_gloo_ranks(_rank, [(str(workspace.root), str(run_dir), str(data)) for data in data_by_rank])


@pytest.mark.slow
def test_one_rank_failing_fails_every_rank_and_writes_nothing(tiny_run, workspace, tmp_path):
    run_dir, test = tiny_run
    # Rank 1 cannot read the data (not mounted on its node) while rank 0 scores its shard.
    results = _two_ranks(workspace, run_dir, [test, tmp_path / "not-mounted"])
    assert results[0][0] == results[1][0] == "failed", results
    (message, echo), (same, echo_1) = results[0][1], results[1][1]
    assert message == same and message.startswith("rank 1: ") and "not-mounted" in message
    assert echo and not echo_1  # the command prints it once, on rank 0
    assert workspace.list_predictions() == [] and not list(workspace.predictions_dir.glob("*.parquet"))
    assert _leftovers(workspace) == []

    # Each rank reads a different copy of the images: refused, not merged.
    shutil.copytree(test, tmp_path / "copy")
    next((tmp_path / "copy" / OCT_CLASSES[0]).iterdir()).unlink()
    results = _two_ranks(workspace, run_dir, [test, tmp_path / "copy"])
    assert {results[0][0], results[1][0]} == {"failed"}, results
    assert "read different image sets (10, 11 images)" in results[0][1][0]
    assert workspace.list_predictions() == [] and _leftovers(workspace) == []

    # Rank 0 fails before any image is scored: rank 1 stops with its reason, and says nothing itself.
    results = _two_ranks(workspace, run_dir, [tmp_path / "not-mounted", test])
    assert results[0][0] == results[1][0] == "failed", results
    (message, echo), (same, echo_1) = results[0][1], results[1][1]
    assert "not-mounted" in message and same == f"rank 0: {message}" and echo and not echo_1
    assert workspace.list_predictions() == [] and _leftovers(workspace) == []
