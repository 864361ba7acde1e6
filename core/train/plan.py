"""Which images a run trains, validates and tests on: binary one-vs-rest relabelling, patient split, limited data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data import Dataset, load_dataset
from core.data.splits import limited_subset, patient_split
from core.data.tasks import BinaryView, Task, task_from_dict
from core.errors import InputError
from core.train.config import RunConfig

_URGENCY = ("observation", "routine", "urgent")


@dataclass
class TrainingData:
    """A run's data. `dataset` is in the training task's labels; rows are positions into it."""

    dataset: Dataset
    source_fingerprint: str  # of the dataset as loaded (before any relabelling): keys the feature cache
    task: Task
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    source_task: Task | None = None  # the dataset's own task (differs from `task` in binary runs)
    binary: dict | None = None       # normalised one-vs-rest spec: name, positive, negative (source classes)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        """Class indices (or the 0/1 matrix for multi-label tasks) of the given rows."""
        if self.task.kind == "multilabel":
            return self.dataset.label_matrix()[rows].astype(np.float32)
        return self.dataset.label_indices()[rows]

    def describe(self) -> dict:
        return {"train": int(len(self.train_rows)), "val": int(len(self.val_rows)),
                "test": int(len(self.test_rows)), "classes": list(self.task.classes)}


def binary_spec(task: Task, spec: dict | str) -> dict:
    """Normalise a binary request: a view name of the task, or {'name','positive','negative'} (empty = rest)."""
    if isinstance(spec, str):
        if any(v.name == spec for v in task.binary_views):
            view = task.view(spec)
            return {"name": view.name, "positive": list(view.positive), "negative": list(view.negative)}
        # "POS[,POS][:NEG[,NEG]]"; no negative side means "the rest".
        pos, _, neg = spec.partition(":")
        names = lambda text: [c.strip() for c in text.split(",") if c.strip()]  # noqa: E731
        spec = {"positive": names(pos), "negative": names(neg)}
    positive = [task.canonical_label(c) for c in spec.get("positive") or []]
    negative = [task.canonical_label(c) for c in spec.get("negative") or []]
    if not positive:
        raise InputError("binary run: name at least one positive class")
    if not negative:
        negative = [c for c in task.classes if c not in positive]
    overlap = set(positive) & set(negative)
    if overlap:
        raise InputError(f"binary run: classes {sorted(overlap)} are both positive and negative")
    if not negative:
        raise InputError("binary run: nothing left for the negative side")
    name = spec.get("name") or f"{'+'.join(positive)} vs {'+'.join(negative) if spec.get('negative') else 'rest'}"
    return {"name": str(name), "positive": positive, "negative": negative}


def _side_name(members: list[str], view_name: str, index: int) -> str:
    if len(members) == 1:
        return members[0]
    parts = view_name.split(" vs ")
    return parts[index].strip() if len(parts) == 2 else "+".join(members)


def binary_task(task: Task, spec: dict) -> Task:
    """A two-class task (negative, positive) derived from a multi-class one; class 1 is the positive."""
    if task.kind == "multilabel":
        raise InputError("binary one-vs-rest runs need a single-label task, not a multi-label one")
    pos_name = _side_name(spec["positive"], spec["name"], 0)
    neg_name = _side_name(spec["negative"], spec["name"], 1)
    if pos_name == neg_name:
        pos_name, neg_name = "+".join(spec["positive"]), "+".join(spec["negative"])
    levels = task.referral_levels

    def level(members):
        known = [levels[c] for c in members if c in levels]
        return max(known, key=_URGENCY.index) if known else None

    referral = tuple((n, lv) for n, lv in ((neg_name, level(spec["negative"])), (pos_name, level(spec["positive"])))
                     if lv is not None)
    return Task(name=f"{task.name}:{spec['name']}", title=f"{task.title}: {spec['name']}", modality=task.modality,
                kind="binary", classes=(neg_name, pos_name), referral_level=referral,
                binary_views=(BinaryView(spec["name"], (pos_name,), (neg_name,)),),
                description=f"Binary run from {task.name}: {spec['positive']} vs {spec['negative']}.")


def relabel_binary(ds: Dataset, spec: dict, task: Task | None = None) -> Dataset:
    """The rows of ds in either side of `spec`, labelled with the binary task's two class names."""
    task = task or binary_task(ds.task, spec)
    neg_name, pos_name = task.classes
    mapping = {**{c: pos_name for c in spec["positive"]}, **{c: neg_name for c in spec["negative"]}}
    table = ds.table[ds.table["label"].isin(mapping)].copy()
    if table.empty:
        raise InputError(ds.in_messages(f"{ds.source}: no images of classes {sorted(mapping)} for the binary run"))
    table["label"] = table["label"].map(mapping)
    return Dataset(table, task, ds.source, ds.problems, ds.root, ds.max_pixels)


def _rows_of(ds: Dataset, split: str) -> np.ndarray:
    return np.flatnonzero((ds.table["split"] == split).to_numpy())


def prepare_data(cfg: RunConfig, ds: Dataset | None = None) -> TrainingData:
    """Load (or take) the dataset and decide the train / validation / test rows for this run."""
    if ds is None:
        task = task_from_dict(cfg.task, source="run config task") if cfg.task else None
        ds = load_dataset(cfg.data, task)
    fingerprint = ds.fingerprint
    source_task, spec = ds.task, None
    if cfg.binary:
        spec = binary_spec(ds.task, cfg.binary)
        ds = relabel_binary(ds, spec)
    test_rows = _rows_of(ds, "test")
    val_rows = _rows_of(ds, "val")
    pool = np.flatnonzero(~ds.table["split"].isin(["val", "test"]).to_numpy())
    if len(pool) == 0:
        raise InputError(ds.in_messages(f"{ds.source}: no training images (every image is in a val or test split)"))
    if len(val_rows) == 0 and cfg.val_fraction > 0 and cfg.head_fit != "logistic":
        # (The logistic probe validates by patient-grouped cross-validation on every training image instead.)
        # Patient-level split: no patient's images on both sides, or validation would flatter the model.
        train_part, val_part = patient_split(ds.subset(pool), cfg.val_fraction, seed=cfg.seed)
        pool, val_rows = pool[train_part], pool[val_part]
    if cfg.per_class is not None or cfg.fraction is not None:
        if ds.task.kind == "multilabel":
            raise InputError("limited-data runs (per_class / fraction) need a single-label task")
        chosen = limited_subset(ds.subset(pool), per_class=cfg.per_class, fraction=cfg.fraction, seed=cfg.seed)
        pool = pool[chosen]
    return TrainingData(ds, fingerprint, ds.task, np.sort(pool), np.sort(val_rows), np.sort(test_rows),
                        source_task=source_task, binary=spec)
