"""Workspaces of synthetic predictions (labelled synthetic) for the evaluation pages' tests and benchmark.

The predictions are generated, not produced by a model: they exercise the pages at sizes (100,000 rows) and task
kinds (ordinal, multi-label) that the seeded demo workspace does not reach, without training anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.tasks import get_task
from core.infer.predictions import write_predictions
from core.store import Workspace
from core.train.config import RunConfig

TEST_SET_NAME = "Synthetic predictions (not real patients)"


def synthetic_truth(task, n: int, seed: int = 0) -> np.ndarray:
    """Class indices (imbalanced, as in the OCT data: more CNV and NORMAL), or a 0/1 matrix for multi-label."""
    rng = np.random.default_rng(seed)
    k = task.num_classes
    if task.kind == "multilabel":
        prevalence = np.linspace(0.05, 0.35, k)
        return (rng.random((n, k)) < prevalence).astype(int)
    weights = np.linspace(2.0, 1.0, k)
    return rng.choice(k, size=n, p=weights / weights.sum())


def synthetic_probabilities(task, truth: np.ndarray, separation: float = 1.5, seed: int = 1) -> np.ndarray:
    """Probabilities that rank the true class higher by `separation` logits (independent per label if multi-label)."""
    rng = np.random.default_rng(seed)
    n, k = truth.shape[0], task.num_classes
    logits = rng.normal(size=(n, k))
    if task.kind == "multilabel":
        logits = logits - 2.0 + separation * truth
        return 1.0 / (1.0 + np.exp(-logits))
    if task.kind == "ordinal":
        # Mass falls off with the distance in grades, so errors are mostly to neighbouring grades.
        logits = logits - separation * np.abs(np.arange(k)[None, :] - truth[:, None])
    else:
        logits[np.arange(n), truth] += separation
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def predictions_table(task, truth: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """A table in the predictions contract (image_id, label, patient_id, prob_<C>, predicted, true_<C>)."""
    n = truth.shape[0]
    names = np.asarray(task.classes, dtype=object)
    frame = pd.DataFrame({"image_id": [f"synthetic-{i:06d}.png" for i in range(n)],
                          "patient_id": [f"P{i // 2:06d}" for i in range(n)]})
    if task.kind == "multilabel":
        frame["label"] = ["|".join(names[row.astype(bool)]) for row in truth]
    else:
        frame["label"] = names[truth]
    for j, cls in enumerate(task.classes):
        frame[f"prob_{cls}"] = probs[:, j]
    if task.kind == "multilabel":
        frame["predicted"] = ["|".join(names[row >= 0.5]) for row in probs]
        for j, cls in enumerate(task.classes):
            frame[f"true_{cls}"] = truth[:, j]
    else:
        frame["predicted"] = names[probs.argmax(axis=1)]
    return frame


def build_workspace(root, task_name: str = "oct-kermany", n: int = 1000, runs: list[dict] | None = None,
                    seed: int = 0) -> dict:
    """A workspace with one synthetic test set and one succeeded run per entry of `runs`, each with predictions.

    runs: dicts with name, separation, and optionally per_class / fraction / training_images / balance.
    Returns {"root", "test_set_id", "run_ids", "paths"}.
    """
    task = get_task(task_name)
    runs = runs or [{"name": "Synthetic model", "separation": 1.5}]
    ws = Workspace.open(root)
    truth = synthetic_truth(task, n, seed)
    fingerprint = hashlib.sha256(f"{task_name}-{n}-{seed}".encode()).hexdigest()
    test_set_id = ws.register_dataset(name=TEST_SET_NAME, source=str(Path(root) / "no-images"), task=task.name,
                                      fingerprint=fingerprint, n_images=n, role="test_set",
                                      meta={"synthetic": True})
    run_ids, paths = [], []
    for i, spec in enumerate(runs):
        cfg = RunConfig(data="", task=task.to_dict(), name=spec["name"], backbone="synthetic-predictions",
                        pretrained=False, per_class=spec.get("per_class"), fraction=spec.get("fraction"),
                        balance=spec.get("balance", "none"), seed=i)
        run_id = ws.create_run(config=cfg.to_dict(), name=spec["name"])
        run_dir = ws.runs_dir / run_id
        cfg.save(run_dir / "config.json")
        (run_dir / "summary.json").write_text(json.dumps(
            {"images": {"train": int(spec.get("training_images", 1000 * (i + 1)))}, "synthetic": True}))
        ws.update_run(run_id, status="succeeded")
        probs = synthetic_probabilities(task, truth, spec.get("separation", 1.5), seed=seed + 100 + i)
        frame = predictions_table(task, truth, probs)
        path = ws.predictions_path(run_id, test_set_id)
        write_predictions(frame, path, {"task": task.to_dict(), "run_id": run_id, "dataset_id": test_set_id,
                             "classes": list(task.classes), "synthetic": True})
        ws.record_predictions(run_id, test_set_id, path, len(frame))
        run_ids.append(run_id)
        paths.append(str(path))
    return {"root": str(ws.root), "test_set_id": test_set_id, "run_ids": run_ids, "paths": paths}
