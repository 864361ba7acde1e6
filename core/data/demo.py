"""The built-in demo: synthetic OCT B-scans generated into the workspace on first use and registered there."""

from __future__ import annotations

import json
import os
from pathlib import Path
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


# -- a small real demo from a MedMNIST .npz the user already has ---------------------------------------------
REAL_DEMO_SETTING = "demo_real_ids"
REAL_DEMO_FOLDER = "demo_real"
# Images per class kept from the file's training split and from its held-out split (test, else val): small enough
# that frozen features + a logistic head train in well under two minutes on two CPU cores
# (benchmarks/bench_demo_real.py), large enough for intervals a stakeholder can read.
REAL_DEMO_TRAIN_PER_CLASS = 150
REAL_DEMO_TEST_PER_CLASS = 100


def real_demo_status(ws: Workspace) -> dict:
    """The real demo's registry ids ({} when none was built, or its records were removed)."""
    ids = ws.get_setting(REAL_DEMO_SETTING, {}) or {}
    ok = bool(ids) and all(ws.get_dataset(ids.get(k, "")) is not None for k in ("dataset_id", "test_set_id"))
    return dict(ids) if ok else {}


def _pick(table, split: str, classes, per_class: int, rng) -> list[int]:
    """Up to `per_class` random rows of each class in `split` (row positions, in file order)."""
    import numpy as np

    chosen = []
    for cls in classes:
        rows = np.flatnonzero(((table["split"] == split) & (table["label"] == cls)).to_numpy())
        if rows.size:
            chosen.extend(rng.choice(rows, size=min(per_class, rows.size), replace=False).tolist())
    return sorted(chosen)


def _write_subset(ds, rows: list[int], split: str, target) -> None:
    """rows of `ds` (a MedMNIST Dataset) as a MedMNIST .npz with one split, written atomically."""
    import numpy as np

    from core.data.images import npz_array
    from core.store.files import write_atomically

    images = np.stack([npz_array(ds.table["path"].iat[i]) for i in rows])
    index = {cls: k for k, cls in enumerate(ds.task.classes)}
    labels = np.array([[index[ds.table["label"].iat[i]]] for i in rows], dtype=np.int64)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:  # a file object: np.savez would add ".npz" to a temporary name
            np.savez_compressed(out, **{f"{split}_images": images, f"{split}_labels": labels})

    write_atomically(target, write)


def build_real_demo(ws: Workspace, npz_path, *, train_per_class: int = REAL_DEMO_TRAIN_PER_CLASS,
                    test_per_class: int = REAL_DEMO_TEST_PER_CLASS, seed: int = 0, actor=None) -> dict:
    """A small real demo from a MedMNIST .npz already on this machine (e.g. pneumoniamnist.npz): up to
    `train_per_class` images per class of its training split become a training set, up to `test_per_class` of its
    test split (val when it has none) a held-out test set, both copied into the workspace (a few hundred small
    images) and registered. Returns {'dataset_id', 'test_set_id', 'task', 'n_train', 'n_test', 'file'}.

    Refuses, naming the problem, a file that is not a MedMNIST-shaped .npz, multi-label data (ChestMNIST) and a
    file without a second split to test on. Messages name the file, never its server folder."""
    import numpy as np

    from core.data.ingest import _register
    from core.data.loading import load_dataset
    from core.errors import InputError
    from core.store.access import SHELL, check_server_folder, require

    actor = actor or SHELL
    require(actor, "register_dataset")
    text = str(npz_path or "").strip()
    if not text:
        raise InputError("MedMNIST file: give the path of a MedMNIST .npz on this server")
    path = Path(text).expanduser()
    check_server_folder(ws, path.parent, actor=actor)  # dashboard users: only under the server's data roots
    name = path.name
    if path.suffix.lower() != ".npz":
        raise InputError(f"{name}: not a .npz file; give a MedMNIST .npz (e.g. pneumoniamnist.npz)")
    if not path.is_file():
        raise InputError(f"{name}: no such file on the server")
    path = path.resolve()
    try:
        ds = load_dataset(path)
    except InputError as exc:
        raise InputError(f"{name} is not a MedMNIST .npz (arrays train_images/train_labels, and val_* or "
                         f"test_*): {str(exc).replace(str(path), name)}") from None
    if ds.task.kind == "multilabel":
        raise InputError(f"{name}: multi-label MedMNIST data (one 0/1 column per finding, like ChestMNIST) is not "
                         "offered as a demo; use a single-label file such as pneumoniamnist, octmnist or "
                         "breastmnist")
    splits = ds.splits()
    held_out = "test" if "test" in splits else "val" if "val" in splits else None
    if "train" not in splits or held_out is None:
        raise InputError(f"{name}: a demo needs a training split and a held-out split (test or val); the file "
                         f"has {', '.join(splits) or 'none'}")
    rng = np.random.default_rng(seed)
    train_rows = _pick(ds.table, "train", ds.task.classes, int(train_per_class), rng)
    test_rows = _pick(ds.table, held_out, ds.task.classes, int(test_per_class), rng)
    for label, rows in (("training", train_rows), ("held-out", test_rows)):
        if len(set(ds.table["label"].iloc[rows])) < 2:
            raise InputError(f"{name}: the {label} split holds fewer than two classes; a model cannot be "
                             "trained or judged on it")
    folder = ws.root / REAL_DEMO_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stem = path.stem.lower()  # kept: the reader names the task by it (pneumoniamnist -> pneumonia-binary)
    params = {"file": name, "train_per_class": int(train_per_class), "test_per_class": int(test_per_class),
              "held_out_split": held_out, "seed": int(seed)}
    ids = {}
    for role, split, rows, suffix in (("dataset", "train", train_rows, "train"),
                                      ("test_set", "test", test_rows, "test")):
        target = folder / f"{stem}-demo-{suffix}.npz"
        _write_subset(ds, rows, split, target)
        subset = load_dataset(target, task=ds.task)
        title = f"Real demo: {path.stem} ({'training' if role == 'dataset' else 'held-out test'} images)"
        result = _register(ws, subset, name=title, source=target, role=role, skip_bad=False,
                           extra_meta={"format": "npz", "demo_real": params})
        ids["dataset_id" if role == "dataset" else "test_set_id"] = result.dataset_id
    from core.store import audit_trail

    audit_trail.record(ws, actor, "dataset_registered", f"dataset {ids['dataset_id']}",
                       {"demo_real": params, "test_set": ids["test_set_id"]})
    out = {**ids, "task": ds.task.name, "n_train": len(train_rows), "n_test": len(test_rows), "file": name}
    ws.set_setting(REAL_DEMO_SETTING, out)
    return out
