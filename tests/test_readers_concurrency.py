"""Two reader sessions in two processes writing 500 answers each to one workspace: nothing lost or duplicated."""

from __future__ import annotations

import multiprocessing as mp

import pandas as pd
import pytest

from core.readers import create_study, finish, join_study, list_readings, next_item, record_answer
from core.store import Workspace

CLASSES = ["CNV", "DME", "DRUSEN", "NORMAL"]
N_IMAGES = 500


def _label_for(reader: str, image_id: str) -> str:
    # Each reader's answers differ, so an overwrite by the other reader would show.
    return CLASSES[(int(image_id[3:]) + (0 if reader == "reader-a" else 1)) % 4]


def _read_all(root: str, study_id: str, reader: str, barrier) -> int:
    ws = Workspace.open(root)
    join_study(ws, study_id, reader)
    barrier.wait()  # start writing at the same moment
    written = 0
    while (item := next_item(ws, study_id, reader)) is not None:
        record_answer(ws, study_id, reader, item.image_id, _label_for(reader, item.image_id), confidence=3)
        if written % 50 == 0:  # a re-click now and then: must update, never add a row
            record_answer(ws, study_id, reader, item.image_id, _label_for(reader, item.image_id), confidence=4)
        written += 1
    finish(ws, study_id, reader)
    return written


@pytest.mark.slow
def test_two_processes_500_answers_each(workspace):
    images = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(N_IMAGES)],
                           "label": [CLASSES[i % 4] for i in range(N_IMAGES)]})
    study_id = create_study(workspace, "ts-conc", images, "oct-kermany", seed=0)
    ctx = mp.get_context("spawn")  # genuinely separate interpreters, as two server processes would be
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        results = [pool.apply_async(_read_all, (str(workspace.root), study_id, r, barrier))
                   for r in ("reader-a", "reader-b")]
        written = [r.get(timeout=300) for r in results]
    assert written == [N_IMAGES, N_IMAGES]
    with workspace.connect() as con:
        rows = con.execute("SELECT reader_id, image_id, label, confidence FROM answers WHERE study_id=?",
                           (study_id,)).fetchall()
    answers = pd.DataFrame([dict(r) for r in rows])
    assert len(answers) == 2 * N_IMAGES
    assert not answers.duplicated(["reader_id", "image_id"]).any()
    for reader, group in answers.groupby("reader_id"):
        assert set(group["image_id"]) == set(images["image_id"])
        assert (group["label"] == [_label_for(reader, i) for i in group["image_id"]]).all()
    assert answers["confidence"].value_counts().to_dict() == {3: 2 * (N_IMAGES - 10), 4: 20}
    readings = list_readings(workspace, "ts-conc")
    assert len(readings) == 2 * N_IMAGES
