"""Performance page, decision-curve tab, on the seeded workspace (simulated readers labelled)."""

from __future__ import annotations

import json

import pytest

from tests.apptest import open_page


def _decision_chart(at):
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if (spec["layout"].get("title") or {}).get("text", "").startswith("Decision curve"):
            return spec
    raise AssertionError("no decision curve on the page")


def test_decision_curve_tab(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the page stores what it is given: keep it out of the shared workspace
    at = open_page("../pages/performance.py", run_id=seeded_workspace["run_id"],
                   test_set_id=seeded_workspace["test_set_id"])
    assert "Decision curve" in [t.label for t in at.tabs]
    spec = _decision_chart(at)
    names = [trace.get("name") for trace in spec["data"]]
    assert names[:3] == ["model", "treat all", "treat none"]
    simulated = [t for t in spec["data"] if "(simulated)" in (t.get("name") or "")]
    assert len(simulated) >= 3 and all(t["marker"]["symbol"] == "diamond" for t in simulated)
    # The Kermany penalty matrix implies acting at a risk between 0.2 and 1/3 for urgent referral.
    band = spec["layout"]["shapes"][0]
    assert band["x0"] == pytest.approx(0.2) and band["x1"] == pytest.approx(1 / 3)
    assert all(t["x"] == [0.27] for t in simulated)            # readers at the band's middle by default
    assert any("SIMULATED readers" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "net_benefit" in d.value.columns)
    assert "model" in set(table["reader_id"])
    at.slider(key="perf_dca_at").set_value(0.1).run()
    spec = _decision_chart(at)
    assert all(t["x"] == [0.1] for t in spec["data"] if "(simulated)" in (t.get("name") or ""))
