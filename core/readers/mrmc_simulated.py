"""Simulated MRMC reader studies (Roe & Metz 1997 style) for the demo and benchmarks; always labelled simulated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError
from core.readers.readings import SIMULATED_PREFIX

DEMO_TREATMENTS = ("unaided", "aided")


def simulate_mrmc_study(readers: int = 5, cases: int = 120, *, prevalence: float = 0.4,
                        separation: tuple[float, ...] = (1.4, 1.7), treatments: tuple[str, ...] = DEMO_TREATMENTS,
                        seed: int = 0) -> pd.DataFrame:
    """A fully crossed study: every simulated reader rates every case in every treatment.

    Latent score = separation[treatment] x diseased + case effect (shared by all readers) + reader x case
    and treatment x case effects + noise; ratings are its logistic transform (a risk in 0..1, 3 decimals).
    Reader ids start with SIMULATED-, so every view can label them as simulated.
    """
    if readers < 2 or cases < 4:
        raise InputError("a simulated MRMC study needs at least 2 readers and 4 cases")
    if len(separation) != len(treatments):
        raise InputError("give one separation per treatment")
    rng = np.random.default_rng(seed)
    truth = np.zeros(cases, dtype=int)
    truth[: max(2, int(round(prevalence * cases)))] = 1
    rng.shuffle(truth)
    if truth.sum() > cases - 2:
        raise InputError("the prevalence leaves fewer than two non-diseased cases")
    case_effect = rng.normal(0.0, 0.6, cases)
    reader_skill = rng.normal(0.0, 0.25, readers)
    reader_bias = rng.normal(0.0, 0.3, readers)
    reader_case = rng.normal(0.0, 0.5, (readers, cases))
    frames = []
    for i, (name, shift) in enumerate(zip(treatments, separation)):
        treatment_case = rng.normal(0.0, 0.3, cases)
        for j in range(readers):
            latent = ((shift + reader_skill[j]) * truth + case_effect + reader_case[j] + treatment_case
                      + reader_bias[j] - 1.2 + rng.normal(0.0, 0.6, cases))
            frames.append(pd.DataFrame({
                "reader": f"{SIMULATED_PREFIX}reader-{j + 1}", "treatment": name,
                "case": [f"case-{k + 1:04d}" for k in range(cases)], "truth": truth,
                "rating": np.round(1.0 / (1.0 + np.exp(-latent)), 3)}))
    return pd.concat(frames, ignore_index=True)
