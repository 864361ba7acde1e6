"""A small but real workspace for UI tests: tiny synthetic demo, a trained test model, its predictions, simulated
readers. Everything is produced by the product's own code (no hand-written results)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEED_RUN_NAME = "Seeded demo run (tiny test model)"


def seed_workspace(root: str | Path, per_class: int = 6, size: int = 64) -> dict:
    """Build (or reuse) a seeded workspace at `root`; returns the ids the tests need."""
    from core.data.demo import ensure_demo
    from core.infer import predict
    from core.readers import list_readings, store_simulated_readers
    from core.store import Workspace
    from core.train.config import RunConfig
    from core.train.runner import execute_run

    ws = Workspace.open(root)
    demo = ensure_demo(ws, per_class=per_class, test_per_class=max(3, per_class // 2), size=size)
    existing = [r for r in ws.list_runs() if r["name"] == SEED_RUN_NAME and r["status"] == "succeeded"]
    if existing:
        run_id = existing[0]["id"]
    else:
        cfg = RunConfig(data=str(ws.demo_dir / "train"), dataset_id=demo["dataset_id"], name=SEED_RUN_NAME,
                        backbone="test_efficientnet", pretrained=False, mode="features", image_size=size,
                        epochs=3, seed=0, device="cpu", num_workers=0,
                        head_fit="adam")  # an epoch loop, so the Train page has curves to show
        run_id = ws.create_run(config={**cfg.to_dict(), "task": "oct-kermany"}, name=SEED_RUN_NAME)
        run_dir = ws.runs_dir / run_id
        cfg.save(run_dir / "config.json")
        code, _ = execute_run(run_dir, ws, use_slot=False, log=lambda *_: None)
        if code != 0:
            raise RuntimeError(f"seed run failed: {(run_dir / 'train.log').read_text()[-2000:] if (run_dir / 'train.log').exists() else code}")
    frame = predict(run_id, demo["test_set_id"], workspace=ws, num_workers=0)
    if list_readings(ws, demo["test_set_id"]).empty:
        store_simulated_readers(ws, demo["test_set_id"], frame, "oct-kermany", seed=0)
    return {"root": str(ws.root), "dataset_id": demo["dataset_id"], "test_set_id": demo["test_set_id"],
            "run_id": run_id, "predictions_path": frame.attrs.get("path")}
