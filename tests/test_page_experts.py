"""Experts page on the seeded workspace: charts, simulated readers labelled, interval methods, penalties, import."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

PAGE = "../pages/experts.py"


def _open(session_state: dict | None = None) -> AppTest:
    return open_page(PAGE, timeout=120, **(session_state or {}))

def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _titles(at: AppTest) -> list[str]:
    return [(spec["layout"].get("title") or {}).get("text", "") for spec in _charts(at)]


def _table(at: AppTest, column: str):
    """The rendered table that has `column` (AppTest does not expose dataframe keys)."""
    return next(frame for frame in (d.value for d in at.dataframe) if column in frame.columns)


def _summary(at: AppTest):
    return _table(at, "who").set_index("who")


def test_experts_page_renders_charts_and_labels_simulated_readers(own_seeded_workspace):
    at = _open()
    titles = _titles(at)
    assert any(t.startswith("ROC") for t in titles)
    assert any(t.startswith("Likelihood ratios") for t in titles)
    assert any(t.startswith("Weighted error") for t in titles)
    roc = next(spec for spec in _charts(at) if spec["layout"]["title"]["text"].startswith("ROC"))
    readers = [trace for trace in roc["data"] if trace.get("name", "").startswith("SIMULATED-")]
    assert len(readers) == 3 and all("error_x" in t and "error_y" in t for t in readers)
    assert all(t["marker"]["symbol"] == "diamond" for t in readers)  # simulated readers drawn apart
    assert all("sensitivity" in t["hovertemplate"] and "specificity" in t["hovertemplate"] for t in readers)
    assert any("SIMULATED readers" in info.value for info in at.info)
    summary = _summary(at)
    assert "model (all cases)" in summary.index
    # Other tests of the session may add real readers to the shared workspace; the demo's three stay labelled.
    simulated = summary[summary.index.str.startswith("SIMULATED-")]
    assert len(simulated) == 3 and (simulated["kind"] == "simulated reader").all()
    assert (summary.loc[~summary.index.str.startswith("SIMULATED-") & (summary.index != "model (all cases)"),
                        "kind"] == "reader").all()
    assert not _table(at, "model rule").empty


def test_interval_method_switch_changes_the_numbers(own_seeded_workspace):
    at = _open()
    before = _table(at, "measure")
    # A ratio with a zero cell has no log interval: it carries the Koopman bound and says so in its method.
    assert "log (Simel 1991)" in set(before["method"])
    assert set(before["method"]) <= {"log (Simel 1991)", "Koopman score (1984) (zero cell: the log interval is undefined)"}
    at.radio(key="experts_lr_ci").set_value("koopman").run()
    after = _table(at, "measure")
    assert all("Koopman" in m for m in after["method"])
    assert not np.allclose(before[["low", "high"]].to_numpy(float), after[["low", "high"]].to_numpy(float),
                           equal_nan=True)
    forest = next(spec for spec in _charts(at) if spec["layout"]["title"]["text"].startswith("Likelihood"))
    assert "Koopman" in forest["layout"]["title"]["text"]


def test_matching_the_readers_specificity_is_stated(own_seeded_workspace):
    at = _open()
    at.radio(key="experts_match").set_value("specificity").run()
    sentences = [m.value for m in at.markdown if m.value.startswith("- At ")]
    assert len(sentences) == len(_table(at, "model rule")) >= 3 and all("specificity" in s and "the model's sensitivity is" in s for s in sentences)
    rules = _table(at, "model rule")["model rule"]
    assert all("specificity" in rule for rule in rules)


def test_penalty_matrix_from_the_penalties_page_is_used(own_seeded_workspace):
    default = _summary(_open())["weighted error"]
    flat = np.ones((4, 4)) - np.eye(4)  # every mistake costs 1: weighted error = error rate
    edited = _summary(_open({"penalty_matrix": {"oct-kermany": flat.tolist()}}))["weighted error"]
    assert not default.equals(edited)
    accuracy = _summary(_open({"penalty_matrix": {"oct-kermany": flat.tolist()}}))["accuracy"]
    for who in edited.index:
        # With 0/1 penalties the weighted error is exactly 1 - accuracy.
        assert float(edited[who]) == pytest.approx(1 - float(accuracy[who].split(" ")[0]), abs=0.006)


def _readings_csv(image_ids, reader: str, label: str = "NORMAL") -> bytes:
    lines = ["reader_id,image_id,label"] + [f"{reader},{image},{label}" for image in image_ids]
    return ("\n".join(lines) + "\n").encode()


def test_import_validates_everything_and_stores_nothing_on_error(own_seeded_workspace):
    from core.infer import read_predictions
    from core.readers import list_readings
    from core.store import Workspace

    ws = Workspace.open(own_seeded_workspace["root"])
    frame, _ = read_predictions(own_seeded_workspace["predictions_path"])
    ids = list(frame["image_id"])
    bad_reader, good_reader = f"bad-{uuid.uuid4().hex[:6]}", f"imported-{uuid.uuid4().hex[:6]}"
    bad = _readings_csv(ids, bad_reader).decode().replace("NORMAL", "GLAUCOMA", 1).encode()

    at = _open()
    at.file_uploader(key="experts_upload").set_value(("bad.csv", bad, "text/csv"))
    at.run()
    at.button(key="experts_import").click().run()
    assert any("nothing was stored" in e.value for e in at.error)
    assert any("unknown label 'GLAUCOMA'" in c.value for c in at.code)
    assert bad_reader not in set(list_readings(ws, own_seeded_workspace["test_set_id"])["reader_id"])

    at.file_uploader(key="experts_upload").set_value(("good.csv", _readings_csv(ids, good_reader), "text/csv"))
    at.run()
    at.button(key="experts_import").click().run()
    assert not at.exception
    assert any(f"Imported {len(ids)} readings" in s.value for s in at.success)
    assert good_reader in set(list_readings(ws, own_seeded_workspace["test_set_id"])["reader_id"])
    assert good_reader in _summary(at).index

    wide_reader = f"wide-{uuid.uuid4().hex[:6]}"
    wide = ("image_id," + wide_reader + "\n" + "\n".join(f"{image},CNV" for image in ids[:5]) + "\n").encode()
    at.file_uploader(key="experts_upload").set_value(("wide.csv", wide, "text/csv"))
    at.run()
    at.button(key="experts_import").click().run()
    assert any("Imported 5 readings" in s.value for s in at.success)
    stored = list_readings(ws, own_seeded_workspace["test_set_id"])
    assert (stored["reader_id"] == wide_reader).sum() == 5
    # A partial reader is said to be one (user text is markdown-escaped, hence the bare suffix).
    assert any(wide_reader.split("-")[1] in c.value and "graded 5 of" in c.value for c in at.caption)


def test_user_text_is_made_inert_for_markdown():
    from dashboard.widgets import plain

    escaped = plain("![x](http://example.invalid/a.png) [link](http://example.invalid) <b>*bold*</b>")
    for token in ("![", "](", "<b>", "*bold*"):
        assert token not in escaped
    assert escaped.replace("\\", "") == "![x](http://example.invalid/a.png) [link](http://example.invalid) <b>*bold*</b>"
