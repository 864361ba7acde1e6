"""Each reader's net benefit at a threshold: a yes/no call is a risk of 0 or 1 on the decision curve."""

from __future__ import annotations

import pandas as pd

from core.data.tasks import BinaryView, Task
from core.metrics.decision_curve import decision_curve
from core.readers.compare import canonical_labels, is_in, truth_labels
from core.readers.readings import is_simulated


def reader_net_benefits(readings: pd.DataFrame, truth, task: Task, view: BinaryView, threshold: float,
                        prevalence: float | None = None) -> pd.DataFrame:
    """reader_id, images, net_benefit, simulated: each reader's calls in `view` on the images they graded.

    A reader who calls a positive-group class counts as "treat"; by the decision-curve convention a
    risk of exactly 1 is positive and 0 negative at every threshold, so the point sits at `threshold`.
    """
    truth_by_image = truth_labels(truth, task)
    rows = []
    for reader, graded in readings.groupby(readings["reader_id"].astype(str), sort=True):
        images = graded["image_id"].astype(str).to_numpy()
        known = pd.Index(images).isin(truth_by_image.index)
        # As for the model's curve: only images whose true class is in the view count.
        known[known] = is_in(truth_by_image.loc[images[known]].to_numpy(), view.positive + view.negative)
        if not known.any():
            continue
        labels = canonical_labels(graded["label"][known], task)
        calls = is_in(labels.to_numpy(), view.positive).astype(float)
        diseased = is_in(truth_by_image.loc[images[known]].to_numpy(), view.positive)
        curve = decision_curve(diseased, calls, [threshold], prevalence=prevalence)
        rows.append({"reader_id": reader, "images": int(known.sum()),
                     "net_benefit": float(curve["net_benefit"].iloc[0]), "simulated": is_simulated(reader)})
    return pd.DataFrame(rows, columns=["reader_id", "images", "net_benefit", "simulated"])
