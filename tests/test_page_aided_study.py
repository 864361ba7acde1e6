"""Reader study page, aided-vs-unaided mode: no model output unaided, output and a fresh start aided, washout."""

from __future__ import annotations

import uuid

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

PAGE = "../pages/reader_study.py"


@pytest.fixture
def ws(own_seeded_workspace):
    """A private copy of the seeded workspace: every test here creates a study and stores readings."""
    from core.store import Workspace

    return Workspace.open(own_seeded_workspace["root"])


def _aided_study(ws, seeded, washout: float) -> str:
    from core.data import load_dataset
    from core.readers.aided_study import create_aided_study
    from dashboard.common import load_predictions

    row = ws.get_dataset(seeded["test_set_id"])
    frame = load_predictions(seeded["predictions_path"])[0]
    return create_aided_study(ws, row["id"], load_dataset(row["source"], "oct-kermany"), "oct-kermany", frame,
                              subset_size=4, seed=5, washout_days=washout, name=f"aided {uuid.uuid4().hex[:6]}")


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _join(aided_id: str, reader: str) -> AppTest:
    at = open_page(PAGE, timeout=120, role="reader", user=reader, rs_mode="aided")  # a reader grades as themself
    at.selectbox(key="rs_aided_study").set_value(aided_id).run()
    return _ok(at.button(key="rs_aided_join").click().run())


def _has_model_output(at: AppTest) -> bool:
    return any("model probability" in d.value.columns for d in at.dataframe)


def _grade_all(at: AppTest, n: int, class_index: int) -> AppTest:
    for _ in range(n):
        classes = [b for b in at.button if b.key and b.key.startswith("rs_class_")]
        assert len(classes) == 4 and all(b.proto.type == "secondary" for b in classes)   # nothing pre-selected
        _ok(at.button(key=f"rs_class_{class_index}").click().run())
    return _ok(at.button(key="rs_finish").click().run())


def test_unaided_then_aided_session(ws, own_seeded_workspace):
    aided_id = _aided_study(ws, own_seeded_workspace, washout=0.0)
    reader = f"dr-{uuid.uuid4().hex[:6]}"
    at = _join(aided_id, reader)
    assert any("Unaided session: the model's output is not shown" in c.value for c in at.caption)
    assert not _has_model_output(at)
    at = _grade_all(at, 4, class_index=3)
    # Washout 0: the aided session opens at once; no results before it.
    assert any("aided session is open" in s.value for s in at.success)
    assert not any("confusion matrix" in m.value for m in at.markdown)
    at = _ok(at.button(key="rs_aided_next").click().run())
    assert _has_model_output(at)            # the model's output, and none of the unaided answers pre-selected
    at = _grade_all(at, 4, class_index=0)
    assert any("closed both sessions" in s.value for s in at.success)
    assert any("confusion matrix" in m.value for m in at.markdown)


def test_washout_keeps_the_aided_session_closed(ws, own_seeded_workspace):
    aided_id = _aided_study(ws, own_seeded_workspace, washout=28.0)
    at = _grade_all(_join(aided_id, f"dr-{uuid.uuid4().hex[:6]}"), 4, class_index=1)
    assert any("opens after the washout" in i.value for i in at.info)
    assert not _has_model_output(at)
    assert not any("confusion matrix" in m.value for m in at.markdown)
