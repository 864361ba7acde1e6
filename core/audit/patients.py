"""Patient leakage: one patient's images in more than one split, or in both the audited and the training data."""

from __future__ import annotations

import pandas as pd


def _with_patients(scan: pd.DataFrame) -> pd.DataFrame:
    return scan[scan["patient_id"].notna()]


def patient_leakage(scan: pd.DataFrame, against: pd.DataFrame | None = None) -> dict:
    """`within`: patients in several splits of the data, with their image ids per split; `across`: patients in
    both datasets. Without patient ids nothing can be checked, and the result says so."""
    mine = _with_patients(scan)
    out = {"patient_ids_known": bool(len(mine)), "n_patients": int(mine["patient_id"].nunique()),
           "within": [], "across": None}
    if not len(mine):
        out["note"] = "the data names no patients, so leakage between splits cannot be checked"
    for patient, group in mine.groupby("patient_id"):
        if group["split"].nunique() > 1:
            out["within"].append({"patient_id": patient, "splits": {
                split: sorted(g["image_id"]) for split, g in group.groupby("split")}})
    if against is not None:
        theirs = _with_patients(against)
        by_patient = theirs.groupby("patient_id")["image_id"].apply(sorted).to_dict()
        out["across"] = [{"patient_id": patient, "data": sorted(group["image_id"]), "against": by_patient[patient]}
                         for patient, group in mine.groupby("patient_id") if patient in by_patient]
        if not len(theirs):
            out["note_against"] = "the training data names no patients, so leakage into it cannot be checked"
    return out
