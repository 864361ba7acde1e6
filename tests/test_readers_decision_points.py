"""Readers' net benefit: a yes/no call on the decision curve, on the images each reader graded."""

from __future__ import annotations

import pandas as pd
import pytest

from core.data.tasks import get_task
from core.readers.decision_points import reader_net_benefits

TASK = get_task("oct-kermany")


def test_hand_computed_net_benefit():
    truth = pd.DataFrame({"image_id": ["a", "b", "c", "d", "e"], "label": ["CNV", "DME", "NORMAL", "DRUSEN", "NORMAL"]})
    readings = pd.DataFrame({
        "reader_id": ["r1"] * 5 + ["SIMULATED-x"] * 2,
        "image_id": ["a", "b", "c", "d", "e", "a", "c"],
        "label": ["CNV", "NORMAL", "DME", "NORMAL", "NORMAL", "DME", "NORMAL"]})
    view = TASK.default_view()
    out = reader_net_benefits(readings, truth, TASK, view, 0.2).set_index("reader_id")
    # r1: TP = a, FN = b, FP = c; n = 5 -> 1/5 - 1/5 * 0.25 = 0.15.
    assert out.loc["r1", "net_benefit"] == pytest.approx(0.15)
    assert out.loc["r1", "images"] == 5 and not out.loc["r1", "simulated"]
    # SIMULATED-x graded a (TP) and c (TN): 1/2.
    assert out.loc["SIMULATED-x", "net_benefit"] == pytest.approx(0.5)
    assert out.loc["SIMULATED-x", "simulated"]
