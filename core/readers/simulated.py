"""Simulated readers for the demo: stated sensitivity/specificity profiles, seeded, always labelled simulated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.tasks import BinaryView, Task, get_task
from core.errors import InputError
from core.readers.readings import SIMULATED_PREFIX, store_readings
from core.readers.study import stable_seed
from core.store import Workspace


@dataclass(frozen=True)
class SimulatedProfile:
    """A made-up reader. `sensitivity`/`specificity` hold for the task's binary view in expectation;
    `exact_class_rate` is the chance of naming the exact class when the binary call is right."""

    name: str
    reader_id: str
    sensitivity: float
    specificity: float
    exact_class_rate: float = 0.9
    median_seconds: float = 10.0
    description: str = ""

    def __post_init__(self):
        for field in ("sensitivity", "specificity", "exact_class_rate"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"simulated reader {self.name!r}: {field} must be between 0 and 1, got {value}")
        if not self.reader_id.startswith(SIMULATED_PREFIX):
            raise InputError(f"simulated reader ids must start with {SIMULATED_PREFIX!r}, got {self.reader_id!r}")


DEFAULT_PROFILES = (
    SimulatedProfile("Simulated specialist", "SIMULATED-specialist", 0.95, 0.97, exact_class_rate=0.95,
                     median_seconds=9.0, description="A retina specialist: few misses, few false alarms."),
    SimulatedProfile("Simulated cautious over-referrer", "SIMULATED-cautious-over-referrer", 0.99, 0.80,
                     exact_class_rate=0.85, median_seconds=12.0,
                     description="Refers almost every possible case: rarely misses, many false alarms."),
    SimulatedProfile("Simulated generalist", "SIMULATED-generalist", 0.85, 0.90, exact_class_rate=0.80,
                     median_seconds=15.0, description="A general ophthalmologist or optometrist."),
)


def simulated_profile(reader_id: str, profiles=DEFAULT_PROFILES) -> SimulatedProfile | None:
    """The profile behind a simulated reader id (for the page's label and description), else None."""
    return next((p for p in profiles if p.reader_id == str(reader_id)), None)


def _truth_table(truth) -> pd.DataFrame:
    table = getattr(truth, "table", truth)  # a core.data Dataset or a predictions / truth table
    if not isinstance(table, pd.DataFrame) or not {"image_id", "label"} <= set(table.columns):
        raise InputError("simulated readers need a table with image_id and label (a predictions table or dataset)")
    return table[["image_id", "label"]].astype(str).reset_index(drop=True)


def _pick_other(rng: np.random.Generator, candidates: list[int], true_index: int, ordinal: bool) -> int:
    """One class from `candidates`; for ordinal grades, nearer grades are likelier (a grade off by one is
    a commoner mistake than one off by three)."""
    weights = np.array([1.0 / (1 + abs(c - true_index)) if ordinal else 1.0 for c in candidates])
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def _simulate_one(profile: SimulatedProfile, truth_idx: np.ndarray, task: Task, view: BinaryView,
                  rng: np.random.Generator) -> np.ndarray:
    k = task.num_classes
    positive = [task.class_index(c) for c in view.positive]
    negative = [task.class_index(c) for c in view.negative]
    ordinal = task.kind == "ordinal"
    labels = np.empty(len(truth_idx), dtype=int)
    for i, t in enumerate(truth_idx):
        if t in positive:
            group = positive if rng.random() < profile.sensitivity else negative
        elif t in negative:
            group = negative if rng.random() < profile.specificity else positive
        else:  # a class outside the view: right with the exact-class rate, otherwise any other class
            group = list(range(k))
        if t in group:
            others = [c for c in group if c != t]
            exact = not others or rng.random() < profile.exact_class_rate
            labels[i] = t if exact else _pick_other(rng, others, t, ordinal)
        else:
            labels[i] = _pick_other(rng, group, t, ordinal)
    return labels


def simulate_readers(truth, task: str | Task, profiles=DEFAULT_PROFILES, seed: int = 0,
                     view: str | BinaryView | None = None) -> pd.DataFrame:
    """Readings (reader_id, image_id, label, seconds) from simulated readers who reach each profile's
    sensitivity and specificity on the binary view (default: the task's first, e.g. urgent vs rest) in
    expectation, with confusions inside each group too. Seeded per (seed, profile)."""
    task = get_task(task)
    if task.kind == "multilabel":
        raise InputError(f"task {task.name!r}: simulated readers need one label per image (not multi-label)")
    if view is None:
        view = task.default_view()
        if view is None:
            raise InputError(f"task {task.name!r} has no binary view to simulate readers on")
    elif not isinstance(view, BinaryView):
        view = task.view(view)
    table = _truth_table(truth)
    truth_idx = np.array([task.class_index(task.canonical_label(v)) for v in table["label"]], dtype=int)
    pieces = []
    for profile in profiles:
        rng = np.random.default_rng(stable_seed("simulated", seed, profile.reader_id))
        labels = _simulate_one(profile, truth_idx, task, view, rng)
        seconds = np.round(rng.lognormal(np.log(profile.median_seconds), 0.4, size=len(table)), 1)
        pieces.append(pd.DataFrame({"reader_id": profile.reader_id, "image_id": table["image_id"],
                                    "label": [task.classes[j] for j in labels], "seconds": seconds}))
    return pd.concat(pieces, ignore_index=True)


def store_simulated_readers(ws: Workspace, test_set_id: str, truth, task: str | Task,
                            profiles=DEFAULT_PROFILES, seed: int = 0) -> pd.DataFrame:
    """Simulate and store the demo's readers for a test set (replacing earlier simulated ones of the same
    ids, so calling it again is harmless). Returns the readings."""
    readings = simulate_readers(truth, task, profiles=profiles, seed=seed)
    store_readings(ws, test_set_id, readings, "simulated", replace=True)
    return readings
