"""Choosing the cases to explain from a predictions table: misclassified first, filtered by class, confidence and
reader disagreement (no torch here; core.explain.case_maps loads the model and images that explain them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.errors import InputError
from core.readers.readings import REQUIRED_READING_COLUMNS

OUTCOMES = {"misclassified": "Misclassified", "correct": "Correct", "all": "All cases"}
# Reader filters: each keeps the cases where most readers (or the readers among themselves) disagree with something.
DISAGREEMENTS = {
    "any": "Any (no reader filter)",
    "readers_split": "Readers disagree with each other",
    "readers_vs_model": "Most readers disagree with the model",
    "readers_wrong": "Most readers are wrong",
}
READER_COLUMNS = ["n_readers", "readers_correct", "readers_with_model", "readers_split", "reader_answers"]


@dataclass(frozen=True)
class CaseFilter:
    """Which cases a gallery shows. Empty class tuples mean every class; `image_ids` (e.g. a confusion-matrix cell
    chosen on another page) restricts to those ids when given; `confidence` bounds the model's probability of its
    own call, inclusive."""

    outcome: str = "misclassified"
    true_classes: tuple[str, ...] = ()
    predicted_classes: tuple[str, ...] = ()
    confidence: tuple[float, float] = (0.0, 1.0)
    disagreement: str = "any"
    image_ids: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise InputError(f"case outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        if self.disagreement not in DISAGREEMENTS:
            raise InputError(f"reader filter must be one of {', '.join(DISAGREEMENTS)}, got {self.disagreement!r}")
        low, high = (float(v) for v in self.confidence)
        if not 0.0 <= low <= high <= 1.0:
            raise InputError(f"confidence range must satisfy 0 <= low <= high <= 1, got {self.confidence}")


def _label_set(value) -> frozenset[str]:
    return frozenset(part for part in str(value).split("|") if part)


def reader_summary(readings: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Per image of `cases` (image_id, label, predicted) that has readings: n_readers, the share of readers who are
    right (readers_correct) and who agree with the model's call (readers_with_model), readers_split (they gave more
    than one answer) and reader_answers ('reader: label; ...', for display as plain text)."""
    if readings is None or readings.empty:
        return pd.DataFrame(columns=["image_id", *READER_COLUMNS])
    missing = [c for c in REQUIRED_READING_COLUMNS if c not in readings.columns]
    if missing:
        raise InputError(f"readings lack column(s) {', '.join(missing)}")
    facts = cases.set_index(cases["image_id"].astype(str))[["label", "predicted"]]
    merged = readings.assign(image_id=readings["image_id"].astype(str))
    merged = merged[merged["image_id"].isin(facts.index)]
    merged = merged.join(facts.rename(columns={"label": "truth", "predicted": "model"}), on="image_id")
    # Multi-label answers are '|'-joined sets: compare them as sets, so 'A|B' and 'B|A' agree.
    answer = merged["label"].map(_label_set)
    merged = merged.assign(right=answer == merged["truth"].map(_label_set),
                           with_model=answer == merged["model"].map(_label_set),
                           answer=answer.map(lambda s: "|".join(sorted(s))),
                           shown=merged["reader_id"].astype(str) + ": " + merged["label"].astype(str))
    grouped = merged.sort_values(["image_id", "reader_id"]).groupby("image_id", sort=True)
    out = pd.DataFrame({
        "n_readers": grouped["reader_id"].nunique(),
        "readers_correct": grouped["right"].mean(),
        "readers_with_model": grouped["with_model"].mean(),
        "readers_split": grouped["answer"].nunique() > 1,
        "reader_answers": grouped["shown"].agg("; ".join),
    })
    return out.rename_axis("image_id").reset_index()


def case_table(frame: pd.DataFrame, classes: Sequence[str], readings: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per image of a predictions table: image_id, label, predicted, correct, confidence (the model's
    probability of its call; for multi-label calls the highest probability), target_class (the class a map explains
    by default: the call, or the most probable class) and p_true (probability of the true class; NaN for
    multi-label), plus the reader_summary columns when readings are given."""
    classes = [str(c) for c in classes]
    needed = ["image_id", "label", "predicted", *[f"prob_{c}" for c in classes]]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"the predictions table lacks column(s) {', '.join(missing)}")
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    names = np.asarray(classes, dtype=object)
    labels = frame["label"].astype(str).to_numpy()
    predicted = frame["predicted"].fillna("").astype(str).to_numpy()
    position = {c: i for i, c in enumerate(classes)}
    top = probs.argmax(axis=1) if len(probs) else np.array([], dtype=int)
    called = np.array([position.get(p, -1) for p in predicted])
    rows = np.arange(len(frame))
    confidence = np.where(called >= 0, probs[rows, np.maximum(called, 0)], probs.max(axis=1) if len(probs) else 0.0)
    true_index = np.array([position.get(label, -1) for label in labels])
    p_true = np.where(true_index >= 0, probs[rows, np.maximum(true_index, 0)], np.nan)
    out = pd.DataFrame({
        "image_id": frame["image_id"].astype(str).to_numpy(),
        "label": labels,
        "predicted": predicted,
        "correct": [_label_set(a) == _label_set(b) for a, b in zip(labels, predicted)],
        "confidence": confidence.astype(float),
        "target_class": np.where(called >= 0, predicted, names[top] if len(top) else predicted),
        "p_true": p_true.astype(float),
    })
    if readings is not None and not readings.empty:
        out = out.merge(reader_summary(readings, out), on="image_id", how="left")
        out["n_readers"] = out["n_readers"].fillna(0).astype(int)
        out["readers_split"] = out["readers_split"].astype("boolean").fillna(False).astype(bool)
        out["reader_answers"] = out["reader_answers"].fillna("")
    return out


def has_readings(cases: pd.DataFrame) -> bool:
    return "n_readers" in cases.columns and bool((cases["n_readers"] > 0).any())


def select_cases(cases: pd.DataFrame, case_filter: CaseFilter = CaseFilter()) -> pd.DataFrame:
    """The rows of a case_table that pass the filter, misclassified first, then the most confident call first (a
    confident mistake is the most instructive one), then by image_id."""
    chosen = cases
    if case_filter.outcome != "all":
        chosen = chosen[chosen["correct"] == (case_filter.outcome == "correct")]
    if case_filter.image_ids is not None:
        chosen = chosen[chosen["image_id"].isin({str(i) for i in case_filter.image_ids})]
    if case_filter.true_classes:
        chosen = chosen[chosen["label"].isin(case_filter.true_classes)]
    if case_filter.predicted_classes:
        chosen = chosen[chosen["predicted"].isin(case_filter.predicted_classes)]
    low, high = case_filter.confidence
    chosen = chosen[(chosen["confidence"] >= low) & (chosen["confidence"] <= high)]
    if case_filter.disagreement != "any":
        if not has_readings(cases):
            raise InputError("the reader filter needs readings for this test set, and there are none")
        chosen = chosen[chosen["n_readers"] > 0]
        if case_filter.disagreement == "readers_split":
            chosen = chosen[chosen["readers_split"]]
        elif case_filter.disagreement == "readers_vs_model":
            chosen = chosen[chosen["readers_with_model"] < 0.5]
        else:
            chosen = chosen[chosen["readers_correct"] < 0.5]
    order = chosen.assign(_right=chosen["correct"].astype(int), _conf=-chosen["confidence"])
    order = order.sort_values(["_right", "_conf", "image_id"], kind="stable")
    return order.drop(columns=["_right", "_conf"]).reset_index(drop=True)
