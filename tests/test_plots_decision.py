"""Decision-curve and MRMC figure builders: the traces, markers and marks they promise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.metrics.decision_curve import decision_curve
from core.metrics.mrmc import mrmc_analysis
from core.plots.decision import decision_curve_figure
from core.plots.mrmc import mrmc_readers_figure

DATA = Path(__file__).parent / "data" / "reader_studies"


def test_decision_figure_has_model_all_none_readers_and_band():
    df = pd.read_csv(DATA / "dca_binary.csv")
    curve = decision_curve(df["cancer"], df["cancerpredmarker"], np.arange(0, 50) / 100)
    readers = pd.DataFrame({"reader_id": ["<b>dr</b>", "SIMULATED-a"], "images": [750, 750],
                            "net_benefit": [0.05, 0.04], "simulated": [False, True], "threshold": [0.2, 0.2]})
    fig = decision_curve_figure(curve, readers, (0.2, 1 / 3))
    names = [t.name for t in fig.data]
    assert names[:3] == ["model", "treat all", "treat none"]
    assert "&lt;b&gt;dr&lt;/b&gt;" in names                     # user text never becomes markup
    assert fig.data[4].marker.symbol == "diamond" and "(simulated)" in fig.data[4].name
    band = fig.layout.shapes[0]
    assert (band.type, band.x0, band.x1) == ("rect", 0.2, 1 / 3)
    single = decision_curve_figure(curve, None, (0.25, 0.25))
    assert single.layout.shapes[0].type == "line" and len(single.data) == 3
    assert fig.layout.yaxis.range[1] > 0.14                      # treat all starts at the prevalence


def test_mrmc_figure_one_line_per_reader_and_the_means():
    result = mrmc_analysis(pd.read_csv(DATA / "vandyke.csv"))
    fig = mrmc_readers_figure(result)
    assert len(fig.data) == 6
    means = fig.data[-1]
    assert list(means.y) == [result.rrrc.treatments[t].estimate for t in ("1", "2")]
    assert means.error_y.array[0] == result.rrrc.treatments["1"].ci95[1] - result.rrrc.treatments["1"].estimate
