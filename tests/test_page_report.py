"""Report page on the seeded workspace: preview, labels, download buttons, options that change the numbers, save."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

PAGE = "../pages/report.py"


def _open(ids: dict) -> AppTest:
    # Pin the seeded run x test set: other tests may add test sets to the shared workspace.
    return open_page(PAGE, timeout=120, run_id=ids["run_id"], test_set_id=ids["test_set_id"])

def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_report_page_renders_preview_and_downloads(own_seeded_workspace):
    at = _open(own_seeded_workspace)
    assert [b.proto.label for b in at.download_button] == ["HTML report", "All numbers (JSON)", "PDF report"]
    assert [m.label for m in at.metric] == ["Accuracy", "Sensitivity", "Specificity", "Weighted error",
                                            "Urgent-referral AUC"]
    warnings = " ".join(w.value for w in at.warning)
    assert "SYNTHETIC DATA" in warnings and "SIMULATED READERS" in warnings
    tabs = [t.label for t in at.tabs]
    assert {"Model card", "Test set", "Penalties", "Readers vs the model", "Methods and limitations"} <= set(tabs)
    assert len(at.get("plotly_chart")) >= 8
    readers = next(d.value for d in at.dataframe if "who" in d.value.columns)
    assert "model (all images)" in set(readers["who"]) and readers["who"].str.startswith("SIMULATED-").sum() == 3


def test_options_change_the_report(own_seeded_workspace):
    at = _open(own_seeded_workspace)
    ci_before = [c for c in _captions(at) if c.startswith("95% CI")]
    assert len(ci_before) == 5
    at.selectbox(key="report_confidence").set_value(0.8).run()
    ci_after = [c for c in _captions(at) if c.startswith("80% CI")]
    assert len(ci_after) == 5 and ci_after != ci_before
    at.number_input(key="report_bootstrap").set_value(0).run()
    assert any("bootstrap resamples set to 0" in c for c in _captions(at))
    at.toggle(key="report_readers").set_value(False).run()
    at.toggle(key="report_penalties").set_value(False).run()
    tabs = [t.label for t in at.tabs]
    assert "Readers vs the model" not in tabs and "Penalties" not in tabs
    assert not any("SIMULATED READERS" in w.value for w in at.warning)
    assert not at.exception


def test_save_writes_the_report_into_the_workspace(own_seeded_workspace):
    at = _open(own_seeded_workspace)
    at.button(key="report_save").click().run()
    assert not at.exception
    saved = Path(next(c.value for c in at.code if c.value.endswith(".html")))  # the methods paragraph is code too
    assert saved.parent == Path(own_seeded_workspace["root"]) / "reports" and saved.is_file()
    assert saved.with_suffix(".json").is_file()
    assert "SYNTHETIC DATA" in saved.read_text(encoding="utf-8")
