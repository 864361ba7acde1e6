"""A workspace whose test set is a CSV manifest with subgroup columns (sex, age) beside real image files, and one
run whose synthetic predictions fail one subgroup: the score separates the classes for women and is noise for men.
Shared by the subgroup tests of the evaluation command line and of the Performance page (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.loading import load_dataset
from core.data.tasks import get_task
from core.infer.predictions import write_predictions
from core.store import Workspace
from core.train.config import RunConfig
from tests._data_files import write_image
from tests._evaluation_data import predictions_table, synthetic_probabilities, synthetic_truth

TASK = get_task("oct-kermany")
TEST_SET_NAME = "Test set with sex and age columns"


def write_sexed_manifest(folder: Path, n: int = 240, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """n images (widths 32 and 48 px alternating) and manifest.csv: path, label, patient_id, sex, age; the first
    half are women. Returns the manifest's path and its table."""
    truth = synthetic_truth(TASK, n, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name = f"images/img{i:04d}.png"
        write_image(folder / name, size=(32 if i % 2 == 0 else 48, 24), seed=i)
        rows.append({"path": name, "label": TASK.classes[truth[i]], "patient_id": f"P{i // 2:04d}",
                     "sex": "F" if i < n // 2 else "M", "age": str(int(rng.integers(20, 90)))})
    table = pd.DataFrame(rows)
    manifest = folder / "manifest.csv"
    table.to_csv(manifest, index=False)
    return manifest, table


def subgroup_workspace(root: Path, n: int = 240, seed: int = 0) -> dict:
    """The workspace: the manifest registered as a test set, one succeeded run with predictions on it."""
    ws = Workspace.open(root)
    manifest, table = write_sexed_manifest(Path(root).parent / "sexed-test-set", n, seed)
    ds = load_dataset(manifest, TASK)
    test_set_id = ws.register_dataset(name=TEST_SET_NAME, source=str(manifest), task=TASK.name,
                                      fingerprint=ds.fingerprint, n_images=len(ds), role="test_set", meta={})
    truth = np.array([TASK.classes.index(c) for c in table["label"]])
    women = (table["sex"] == "F").to_numpy()
    probs = np.where(women[:, None], synthetic_probabilities(TASK, truth, 4.0, seed=seed + 1),
                     synthetic_probabilities(TASK, truth, 0.0, seed=seed + 2))
    frame = predictions_table(TASK, truth, probs)
    frame["image_id"] = table["path"].to_numpy()
    frame["patient_id"] = table["patient_id"].to_numpy()
    cfg = RunConfig(data="", task=TASK.to_dict(), name="Model that fails men", backbone="synthetic-predictions",
                    pretrained=False, seed=0)
    run_id = ws.create_run(config=cfg.to_dict(), name="Model that fails men")
    run_dir = ws.runs_dir / run_id
    cfg.save(run_dir / "config.json")
    (run_dir / "summary.json").write_text(json.dumps({"images": {"train": 1000}, "synthetic": True}))
    ws.update_run(run_id, status="succeeded")
    path = ws.predictions_path(run_id, test_set_id)
    write_predictions(frame, path, {"task": TASK.to_dict(), "run_id": run_id, "dataset_id": test_set_id,
                                    "classes": list(TASK.classes), "source": str(manifest), "synthetic": True})
    ws.record_predictions(run_id, test_set_id, path, len(frame))
    return {"root": str(ws.root), "test_set_id": test_set_id, "run_id": run_id, "path": str(path),
            "manifest": str(manifest)}
