"""Patient-level, class-stratified splits and limited-data subsets (N per class or a fraction), seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data.dataset import SPLITS, Dataset
from core.errors import InputError


def patient_groups(ds: Dataset) -> pd.Series:
    """One group per patient; rows without a patient id are their own group (no id, no leakage to track).
    What every patient-level split and grouped cross-validation folds by."""
    patient = ds.table["patient_id"]
    return patient.where(patient.notna(), "\x00row:" + ds.table["image_id"]).astype(str)




def _group_strata(ds: Dataset, groups: pd.Series) -> pd.DataFrame:
    """Per group: its size and stratum (the group's most frequent label; '|'-joined set for multi-label)."""
    frame = pd.DataFrame({"group": groups.to_numpy(), "label": ds.table["label"].to_numpy()})
    size = frame.groupby("group", sort=True).size()
    # Ties break on label order, so the result does not depend on row order.
    stratum = (frame.groupby(["group", "label"]).size().reset_index(name="n")
               .sort_values(["group", "n", "label"], ascending=[True, False, True])
               .drop_duplicates("group").set_index("group")["label"])
    return pd.DataFrame({"size": size, "stratum": stratum.reindex(size.index)})


def patient_split(ds: Dataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ds's rows into (train, val) row positions: no patient in both, each class near val_fraction.

    Patients are shuffled (seeded) within their class stratum and moved to val while that brings the
    stratum's val image count closer to its target, so whole patients move and proportions hold.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if len(ds) < 2:
        raise InputError(ds.in_messages(f"{ds.source}: {len(ds)} image(s) cannot be split into train and validation"))
    rng = np.random.default_rng(seed)
    groups = patient_groups(ds)
    info = _group_strata(ds, groups)
    val_groups: set[str] = set()
    for stratum in sorted(info["stratum"].unique()):
        members = info[info["stratum"] == stratum]
        names = members.index.to_numpy()[rng.permutation(len(members))]
        target = val_fraction * members["size"].sum()
        taken = 0
        for name in names[:-1] if len(names) > 1 else []:  # the last patient always stays in train
            size = int(members.at[name, "size"])
            if abs(taken + size - target) < abs(taken - target):
                val_groups.add(name)
                taken += size
    in_val = groups.isin(val_groups).to_numpy()
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def limited_subset(ds: Dataset, per_class: int | None = None, fraction: float | None = None,
                   seed: int = 0) -> np.ndarray:
    """Row positions of a stratified subset: `per_class` images of each class, or `fraction` of each.

    Whole patients are taken in seeded random order (the last one cut to hit the count exactly), so
    a subset keeps patients together where it can. A class with fewer images than asked gives all it has.
    """
    if (per_class is None) == (fraction is None):
        raise InputError("give exactly one of per_class (images per class) or fraction")
    if per_class is not None and (int(per_class) != per_class or per_class < 1):
        raise InputError(f"per_class must be a whole number of at least 1, got {per_class}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    groups = patient_groups(ds).to_numpy()
    labels = ds.table["label"].to_numpy()
    chosen: list[np.ndarray] = []
    for label in sorted(set(labels)):
        rows = np.flatnonzero(labels == label)
        want = int(per_class) if per_class is not None else max(1, int(round(fraction * len(rows))))
        patient_order = rng.permutation(np.unique(groups[rows]))
        rank = {g: i for i, g in enumerate(patient_order)}
        # Rows ordered by their patient's random rank, then randomly within the patient.
        jitter = rng.random(len(rows))
        order = np.lexsort((jitter, np.array([rank[g] for g in groups[rows]])))
        chosen.append(rows[order[:want]])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def patient_overlap(ds: Dataset) -> dict[tuple[str, str], list[str]]:
    """Patients found in two splits, per pair of splits (empty when the splits are patient-clean)."""
    table = ds.table.dropna(subset=["patient_id", "split"])
    by_split = {s: set(g["patient_id"]) for s, g in table.groupby("split")}
    names = [s for s in SPLITS if s in by_split]  # train before val before test
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(by_split[a] & by_split[b])
            if shared:
                out[(a, b)] = shared
    return out
