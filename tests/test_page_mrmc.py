"""The MRMC tab of the Experts page: demo (simulated, labelled), an uploaded study, the planning calculator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

VANDYKE = Path(__file__).parent / "data" / "reader_studies" / "vandyke.csv"


def _section():
    from dashboard.mrmc_ui import mrmc_section

    mrmc_section()


def _run(**state) -> AppTest:
    at = AppTest.from_function(_section, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _titles(at: AppTest) -> list[str]:
    return [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "") for c in at.get("plotly_chart")]


def test_demo_is_labelled_simulated_and_analysed():
    at = _run()
    assert any("SIMULATED readers" in info.value for info in at.info)
    sentences = [m.value for m in at.markdown if "Across readers and cases" in m.value]
    assert len(sentences) == 1 and "aided rather than unaided" in sentences[0]
    assert "Reader AUC by treatment" in _titles(at)
    tests = next(d.value for d in at.dataframe if "analysis" in d.value.columns)
    assert list(tests["analysis"]) == ["Random readers and cases", "Fixed readers", "Fixed cases"]
    readers = next(d.value for d in at.dataframe if "reader" in d.value.columns)
    assert readers["reader"].str.startswith("SIMULATED-").all()
    plan = next(d.value for d in at.dataframe if {"readers", "cases", "power"} <= set(d.value.columns))
    assert (plan["power"] >= 0.8).all()
    assert at.metric[0].label == "Power"


def test_uploaded_study_gives_the_published_result():
    from core.readers.mrmc_readings import load_mrmc_readings

    at = _run(mrmc_source="upload", mrmc_table=load_mrmc_readings(VANDYKE), mrmc_name="vandyke.csv")
    sentences = [m.value for m in at.markdown if "Across readers and cases" in m.value]
    # RJafroc / MRMCaov on Van Dyke: difference 0.0438, CI -0.0880 to 0.0004, p = 0.0517 (escaped for markdown).
    assert "raised AUC by 0\\.044 (95% CI 0\\.000 to 0\\.088, p = 0\\.052)" in sentences[0]
    tests = next(d.value for d in at.dataframe if "analysis" in d.value.columns)
    assert tests.loc[0, "statistic"] == "F = 4.456" and tests.loc[0, "df"] == "1, 15.26"
    at.selectbox(key="mrmc_figure").set_value("sensitivity").run()
    at.number_input(key="mrmc_threshold").set_value(3.0).run()
    tests = next(d.value for d in at.dataframe if "analysis" in d.value.columns)
    assert tests.loc[0, "statistic"] == "F = 6.689"      # MRMCaov binary_sens, rating >= 3


def test_upload_without_readings_says_so():
    at = _run(mrmc_source="upload")
    assert any("No MRMC readings uploaded" in info.value for info in at.info)
    assert not _titles(at)


def test_planning_reacts_to_the_inputs():
    at = _run()
    before = at.metric[0].value
    at.number_input(key="mrmc_n_cases").set_value(2000).run()
    assert at.metric[0].value != before


@pytest.mark.usefixtures("own_seeded_workspace")
def test_experts_page_has_the_mrmc_tab():
    at = open_page("../pages/experts.py", timeout=120)
    assert [t.label for t in at.tabs][:3] == ["Readers vs model", "Readings: import and export", "MRMC study"]
    assert "Reader AUC by treatment" in _titles(at)


def test_aided_study_source_without_studies_says_so():
    at = _run(mrmc_source="study")
    assert any("No aided-vs-unaided study yet" in info.value for info in at.info)
