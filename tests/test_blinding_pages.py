"""A reader mid-study sees no model output on the evaluation pages of the same browser session."""

import pytest

from tests.apptest import signed_in_app


@pytest.mark.parametrize("page", ["performance.py", "experts.py"])
def test_evaluation_pages_hidden_while_reading(own_seeded_workspace, page):
    from core.readers import create_study, finish, join_study, next_item, record_answer
    from core.store import Workspace

    ws = Workspace.open(own_seeded_workspace["root"])
    test_set_id = own_seeded_workspace["test_set_id"]
    from core.data.ingest import load_registered

    ds = load_registered(ws, test_set_id)
    study_id = create_study(ws, test_set_id, ds, "oct-kermany", subset_size=2, seed=3, name=f"blind-{page}")
    reader = f"blinding-{page}"
    join_study(ws, study_id, reader)

    at = signed_in_app(timeout=120)
    at.session_state["reader_session"] = {"study_id": study_id, "reader_id": reader}
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("reader study" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 0

    # Once the reader has finished, the same session sees the page again.
    while (item := next_item(ws, study_id, reader)) is not None:
        record_answer(ws, study_id, reader, item.image_id, "NORMAL")
    finish(ws, study_id, reader)
    at.run()
    assert not any("reader study" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) > 0
