"""The built-in demo: synthetic OCT B-scans generated into the workspace on first use and registered there."""

from __future__ import annotations

import json
import os
from typing import Callable

from core.store import Workspace

DEMO_NAME = "Built-in demo: synthetic OCT (not real patients)"
DEMO_TASK = "oct-kermany"


def demo_parameters() -> dict:
    """Default demo size; CORE_DEMO_PER_CLASS / CORE_DEMO_SIZE shrink it (tests, slow machines)."""
    per_class = int(os.environ.get("CORE_DEMO_PER_CLASS", "120"))
    return {
        "per_class": per_class,
        "test_per_class": max(2, per_class // 3),
        "size": int(os.environ.get("CORE_DEMO_SIZE", "256")),
        "seed": 0,
    }


def demo_status(ws: Workspace) -> dict:
    """What exists of the demo: its folder, and its registry ids when registered."""
    ready = (ws.demo_dir / "demo.json").is_file()
    ids = ws.get_setting("demo_ids", {}) or {}
    registered = bool(ids) and ws.get_dataset(ids.get("dataset_id", "")) is not None
    return {"ready": ready, "registered": registered and ready, "path": str(ws.demo_dir), **ids}


def ensure_demo(ws: Workspace, progress: Callable[[int, int], None] | None = None, **overrides) -> dict:
    """Generate the demo images if missing (atomic) and register its train split as a dataset and its test
    split as a test set. Returns {'dataset_id', 'test_set_id', 'path'}; cheap when already done."""
    from core.data.loading import load_dataset
    from core.data.synthetic import generate_demo_dataset

    status = demo_status(ws)
    if status["registered"]:
        return status
    if not status["ready"]:
        params = {**demo_parameters(), **overrides}
        generate_demo_dataset(ws.demo_dir, progress=progress, **params)
    params = json.loads((ws.demo_dir / "demo.json").read_text())
    train = load_dataset(ws.demo_dir / "train", task=DEMO_TASK)
    test = load_dataset(ws.demo_dir / "test", task=DEMO_TASK)
    meta = {"synthetic": True, "demo": params}
    dataset_id = ws.register_dataset(name=DEMO_NAME, source=ws.demo_dir / "train", task=DEMO_TASK,
                                     fingerprint=train.fingerprint, n_images=len(train), role="dataset",
                                     meta=meta, dataset_id="demo-oct-train")
    test_set_id = ws.register_dataset(name=DEMO_NAME + " - test split", source=ws.demo_dir / "test",
                                      task=DEMO_TASK, fingerprint=test.fingerprint, n_images=len(test),
                                      role="test_set", meta=meta, dataset_id="demo-oct-test")
    ids = {"dataset_id": dataset_id, "test_set_id": test_set_id}
    ws.set_setting("demo_ids", ids)
    return {**demo_status(ws), **ids}
