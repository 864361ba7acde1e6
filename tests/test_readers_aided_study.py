"""Aided vs unaided reader study: separate sessions, washout, fresh order, blinding kept across sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.metrics.mrmc import mrmc_analysis
from core.readers import BlindingError, finish, join_study, next_item, own_answer, reader_results, record_answer
from core.readers.aided_study import (AIDED, DONE, UNAIDED, WASHOUT, create_aided_study, get_aided_study,
                                      aided_mrmc_readings, join_aided, model_output, reader_phase, session_code)

CLASSES = ["CNV", "DME", "DRUSEN", "NORMAL"]


def _images(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)],
                         "path": [f"/data/img{i:03d}.jpeg" for i in range(n)],
                         "label": [CLASSES[i % 4] for i in range(n)]})


def _predictions(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=n)
    table = pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)]})
    for j, c in enumerate(CLASSES):
        table[f"prob_{c}"] = probs[:, j]
    return table


def _read_all(ws, session, answer="CNV", confidence=4) -> list[str]:
    order = []
    while (item := next_item(ws, session.study_id, session.session_code)) is not None:
        order.append(item.image_id)
        record_answer(ws, session.study_id, session.session_code, item.image_id, answer, confidence=confidence)
    finish(ws, session.study_id, session.session_code)
    return order


def _end_washout(ws, aided_id, reader):
    """Move the unaided session's close two days into the past (the washout is one day)."""
    study = get_aided_study(ws, aided_id)
    with ws.connect() as con:
        con.execute("UPDATE readers SET finished = finished - 2 * 86400 WHERE study_id=? AND reader_id=?",
                    (study.unaided_study_id, session_code(reader, UNAIDED)))


@pytest.fixture
def aided_id(workspace):
    return create_aided_study(workspace, "ts-demo", _images(), "oct-kermany", _predictions(), washout_days=1.0,
                              name="aid")


def test_full_flow_keeps_blinding(workspace, aided_id):
    ws = workspace
    first = join_aided(ws, aided_id, "dr_a")
    assert first.phase == UNAIDED and first.session_code == "dr_a [unaided]"
    item = next_item(ws, first.study_id, first.session_code)
    with pytest.raises(BlindingError, match="only in the aided session"):
        model_output(ws, aided_id, "dr_a", item.image_id)
    record_answer(ws, first.study_id, first.session_code, item.image_id, "DME", confidence=2)
    assert own_answer(ws, first.study_id, first.session_code, item.image_id)["label"] == "DME"  # going back: fine
    unaided_order = [item.image_id] + _read_all(ws, first, answer="NORMAL")

    waiting = join_aided(ws, aided_id, "dr_a")
    assert waiting.phase == WASHOUT and waiting.study_id is None and waiting.available_at is not None
    with pytest.raises(BlindingError):      # no peeking at the earlier answers during the washout
        own_answer(ws, first.study_id, first.session_code, item.image_id)
    with pytest.raises(BlindingError):      # nor the truth or results
        reader_results(ws, first.study_id, first.session_code)
    with pytest.raises(BlindingError, match="washout"):
        join_study(ws, get_aided_study(ws, aided_id).aided_study_id, "dr_a [aided]")
    with pytest.raises(BlindingError):
        model_output(ws, aided_id, "dr_a", item.image_id)

    _end_washout(ws, aided_id, "dr_a")
    second = join_aided(ws, aided_id, "dr_a")
    assert second.phase == AIDED and second.session_code == "dr_a [aided]"
    shown = next_item(ws, second.study_id, second.session_code)
    output = model_output(ws, aided_id, "dr_a", shown.image_id)
    assert set(output) == set(CLASSES) and sum(output.values()) == pytest.approx(1.0)
    assert own_answer(ws, second.study_id, second.session_code, shown.image_id) is None   # no earlier answer
    with pytest.raises(BlindingError):
        own_answer(ws, first.study_id, first.session_code, shown.image_id)
    aided_order = _read_all(ws, second, answer="CNV")
    assert sorted(aided_order) == sorted(unaided_order) and aided_order != unaided_order   # fresh order
    assert reader_phase(ws, aided_id, "dr_a")[0] == DONE
    report = reader_results(ws, first.study_id, first.session_code)     # both closed: results open
    assert report["reader_id"] == "dr_a [unaided]"


def test_sessions_are_joined_only_through_the_pair(workspace, aided_id):
    study = get_aided_study(workspace, aided_id)
    with pytest.raises(InputError, match="join that study instead"):
        join_study(workspace, study.unaided_study_id, "dr_b")
    with pytest.raises(BlindingError, match="after the unaided session"):
        join_study(workspace, study.aided_study_id, "dr_b [aided]")


def test_mrmc_table_of_two_readers(workspace, aided_id):
    for reader, (before, after) in {"dr_a": ("NORMAL", "CNV"), "dr_b": ("DRUSEN", "DME")}.items():
        _read_all(workspace, join_aided(workspace, aided_id, reader), answer=before, confidence=3)
        _end_washout(workspace, aided_id, reader)
        _read_all(workspace, join_aided(workspace, aided_id, reader), answer=after, confidence=5)
    table = aided_mrmc_readings(workspace, aided_id)
    assert len(table) == 2 * 2 * 12 and set(table["treatment"]) == {UNAIDED, AIDED}
    assert set(table.loc[table.treatment == AIDED, "rating"]) == {10}      # urgent call, certain
    assert set(table.loc[table.treatment == UNAIDED, "rating"]) == {3}     # non-urgent call, confidence 3
    assert table.groupby("case")["truth"].first().sum() == 6               # CNV and DME images are urgent
    result = mrmc_analysis(table)
    assert result.design == "crossed" and result.treatment_names == ("aided", "unaided")


def test_reader_halfway_is_left_out_of_the_mrmc_table(workspace, aided_id):
    _read_all(workspace, join_aided(workspace, aided_id, "dr_a"))
    assert aided_mrmc_readings(workspace, aided_id).empty      # the aided session is not closed yet


def test_bad_creation_input(workspace):
    with pytest.raises(InputError, match="no output for 2"):
        create_aided_study(workspace, "ts", _images(), "oct-kermany", _predictions(10))
    with pytest.raises(InputError, match="washout"):
        create_aided_study(workspace, "ts", _images(), "oct-kermany", _predictions(), washout_days=-1)


def test_staff_cannot_join_or_answer_an_aided_session_as_a_reader(workspace):
    """Issue 21 item 6, aided studies: a session "<code> [unaided]" belongs to reader <code> alone."""
    from core.store.access import READER, RESEARCHER, AccessDenied, Actor

    aided_id = create_aided_study(workspace, "ts", _images(4), "oct-kermany", _predictions(4), washout_days=0)
    with pytest.raises(AccessDenied, match="grade needs the role reader"):
        join_aided(workspace, aided_id, "dr-a", actor=Actor("rob", RESEARCHER))
    with pytest.raises(AccessDenied, match="only reader 'dr-a'"):
        join_aided(workspace, aided_id, "dr-a", actor=Actor("dr-b", READER))
    session = join_aided(workspace, aided_id, "dr-a", actor=Actor("dr-a", READER))
    item = next_item(workspace, session.study_id, session.session_code)
    # The session code is "dr-a [unaided]"; the signed-in reader dr-a answers in it, nobody else does.
    record_answer(workspace, session.study_id, session.session_code, item.image_id, "CNV", actor=Actor("dr-a", READER))
    with pytest.raises(AccessDenied, match="only reader 'dr-a'"):
        record_answer(workspace, session.study_id, session.session_code, item.image_id, "DME",
                      actor=Actor("dr-a [unaided]", READER))
    with pytest.raises(AccessDenied):
        join_study(workspace, session.study_id, session.session_code, actor=Actor("rob", RESEARCHER))
    assert own_answer(workspace, session.study_id, session.session_code, item.image_id)["label"] == "CNV"
