"""The in-app reader study: seeded order, answers committed at once, resume, locking, blinding, passwords."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from core.errors import InputError
from core.readers import (BlindingError, Item, ReaderAuthError, check_reader_password, create_study, end_early,
                          finish, get_study, item_at, join_study, list_readings, list_studies, load_readings,
                          next_item, own_answer, passwords_configured, progress, reader_results, record_answer,
                          set_reader_password, store_readings, study_readings, study_truth)
from core.store import Workspace

CLASSES = ["CNV", "DME", "DRUSEN", "NORMAL"]


def _images(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)],
                         "path": [f"/data/img{i:03d}.jpeg" for i in range(n)],
                         "label": [CLASSES[i % 4] for i in range(n)]})


@pytest.fixture
def study(workspace):
    return create_study(workspace, "ts-demo", _images(), "oct-kermany", subset_size=8, seed=3, name="pilot")


def test_create_study_takes_a_seeded_stratified_subset(workspace):
    a = create_study(workspace, "ts", _images(40), "oct-kermany", subset_size=20, seed=1)
    b = create_study(workspace, "ts", _images(40), "oct-kermany", subset_size=20, seed=1)
    c = create_study(workspace, "ts", _images(40), "oct-kermany", subset_size=20, seed=2)
    picked = {}
    for sid in (a, b, c):
        join_study(workspace, sid, f"reader-{sid}")
        picked[sid] = {item_at(workspace, sid, f"reader-{sid}", p).image_id for p in range(1, 21)}
    assert picked[a] == picked[b] and picked[a] != picked[c]
    truth = _images(40).set_index("image_id")["label"]
    assert truth[sorted(picked[a])].value_counts().tolist() == [5, 5, 5, 5]  # stratified by class
    study = get_study(workspace, a)
    assert study.subset_size == 20 and study.task.name == "oct-kermany"
    assert {s["id"] for s in list_studies(workspace, "ts")} == {a, b, c}


@pytest.mark.parametrize("size", [0, 13])
def test_subset_size_out_of_range(workspace, size):
    with pytest.raises(InputError, match="subset size must be between 1 and 12"):
        create_study(workspace, "ts", _images(), "oct-kermany", subset_size=size)


def test_order_is_seeded_per_reader_and_stable(workspace, study):
    join_study(workspace, study, "alice")
    join_study(workspace, study, "bob")
    order = {r: [item_at(workspace, study, r, p).image_id for p in range(1, 9)] for r in ("alice", "bob")}
    assert sorted(order["alice"]) == sorted(order["bob"]) and len(set(order["alice"])) == 8
    assert order["alice"] != order["bob"]
    # Joining again (a closed tab) resumes with the same order.
    again = join_study(workspace, study, "alice")
    assert again.resumed and [item_at(workspace, study, "alice", p).image_id for p in range(1, 9)] == order["alice"]


def test_served_item_carries_no_truth(workspace, study):
    join_study(workspace, study, "alice")
    item = next_item(workspace, study, "alice")
    assert [f.name for f in dataclasses.fields(Item)] == ["image_id", "path", "position", "total"]
    assert item.position == 1 and item.total == 8 and item.path.endswith(item.image_id + ".jpeg")
    assert item.caption == "Image 1 of 8"


def test_blinded_until_finished(workspace, study):
    join_study(workspace, study, "alice")
    join_study(workspace, study, "bob")
    for _ in range(8):
        item = next_item(workspace, study, "bob")
        record_answer(workspace, study, "bob", item.image_id, "NORMAL")
    finish(workspace, study, "bob")
    item = next_item(workspace, study, "alice")
    record_answer(workspace, study, "alice", item.image_id, "CNV")
    with pytest.raises(BlindingError):
        reader_results(workspace, study, "alice")
    with pytest.raises(BlindingError):
        study_truth(workspace, study, "alice")
    with pytest.raises(BlindingError):  # another reader's answers stay hidden too
        study_readings(workspace, study, requesting_reader="alice")
    with pytest.raises(BlindingError):
        reader_results(workspace, study, "never-joined")
    # The study owner's view holds finished readers only: alice's answer in progress is not in it.
    assert set(study_readings(workspace, study)["reader_id"]) == {"bob"}
    assert study_truth(workspace, study, "bob").shape == (8, 2)
    end_early(workspace, study, "alice")
    assert set(study_readings(workspace, study, requesting_reader="alice")["reader_id"]) == {"alice", "bob"}


def test_answers_are_idempotent_validated_and_resume(workspace, study):
    session = join_study(workspace, study, "alice")
    assert not session.resumed and session.total == 8
    first = next_item(workspace, study, "alice")
    record_answer(workspace, study, "alice", first.image_id, "cnv", confidence=4, seconds=2.5)
    record_answer(workspace, study, "alice", first.image_id, "DME", confidence=5)  # a re-click
    assert own_answer(workspace, study, "alice", first.image_id) == {"label": "DME", "confidence": 5}
    assert progress(workspace, study, "alice").answered == 1
    # A restart: a new Workspace object, fresh connections, the same next image.
    reopened = Workspace.open(workspace.root)
    assert next_item(reopened, study, "alice").position == 2
    with pytest.raises(InputError, match="unknown label"):
        record_answer(workspace, study, "alice", first.image_id, "tumour")
    with pytest.raises(InputError, match="not in reader 'alice'"):
        record_answer(workspace, study, "alice", "img999", "CNV")
    with pytest.raises(InputError, match="confidence must be one of"):
        record_answer(workspace, study, "alice", first.image_id, "CNV", confidence=9)
    with pytest.raises(InputError, match="has not joined"):
        record_answer(workspace, study, "mallory", first.image_id, "CNV")
    with pytest.raises(InputError, match="7 image"):
        finish(workspace, study, "alice")


def test_finish_writes_readings_and_locks_answers(workspace, study):
    join_study(workspace, study, "alice")
    while (item := next_item(workspace, study, "alice")) is not None:
        record_answer(workspace, study, "alice", item.image_id, "CNV", seconds=1.0)
    assert progress(workspace, study, "alice").fraction == 1.0
    done = finish(workspace, study, "alice")
    assert done.status == "finished" and progress(workspace, study, "alice").done
    assert next_item(workspace, study, "alice") is None
    with pytest.raises(InputError, match="answers are locked"):
        record_answer(workspace, study, "alice", item_at(workspace, study, "alice", 1).image_id, "DME")
    readings = list_readings(workspace, "ts-demo")
    assert len(readings) == 8 and set(readings["source"]) == {f"study:{study}"}
    assert finish(workspace, study, "alice").status == "finished"  # finishing twice changes nothing
    assert len(list_readings(workspace, "ts-demo")) == 8


def test_reader_codes_do_not_clash_with_imports(workspace, study, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("reader_id,image_id,label\ncarol,img000,CNV\n")
    store_readings(workspace, "ts-demo", load_readings(path, "oct-kermany"), "r.csv")
    with pytest.raises(InputError, match="already has readings from r.csv"):
        join_study(workspace, study, "carol")
    join_study(workspace, study, "dave")
    dave = pd.DataFrame({"reader_id": ["dave"], "image_id": ["img000"], "label": ["CNV"]})
    with pytest.raises(InputError, match="take part in an in-app reader study"):
        store_readings(workspace, "ts-demo", dave, "d.csv", replace=True)
    other = create_study(workspace, "ts-demo", _images(), "oct-kermany", subset_size=4, seed=9)
    with pytest.raises(InputError, match=f"already has study {study}"):
        join_study(workspace, other, "dave")
    with pytest.raises(InputError, match="reserved"):
        join_study(workspace, study, "simulated-specialist")
    with pytest.raises(InputError, match="give a name"):
        join_study(workspace, study, "   ")


def test_passwords(workspace, study):
    assert not passwords_configured(workspace)
    join_study(workspace, study, "alice")  # no passwords configured: a name is enough
    set_reader_password(workspace, "alice", "correct horse")
    set_reader_password(workspace, "bob", "correct horse")
    assert passwords_configured(workspace)
    assert check_reader_password(workspace, "alice", "correct horse")
    assert not check_reader_password(workspace, "alice", "Correct horse")
    assert not check_reader_password(workspace, "nobody", "correct horse")
    with pytest.raises(ReaderAuthError):
        join_study(workspace, study, "alice")
    with pytest.raises(ReaderAuthError):
        join_study(workspace, study, "alice", password="wrong")
    with pytest.raises(ReaderAuthError):  # once configured, a reader without a password is refused
        join_study(workspace, study, "eve", password="anything")
    assert join_study(workspace, study, "alice", password="correct horse").resumed
    with workspace.connect() as con:
        rows = con.execute("SELECT reader_id, salt, hash FROM reader_passwords ORDER BY reader_id").fetchall()
    assert rows[0]["salt"] != rows[1]["salt"] and rows[0]["hash"] != rows[1]["hash"]  # per-reader salt
    assert b"correct horse" not in rows[0]["hash"]
    with pytest.raises(InputError, match="at least"):
        set_reader_password(workspace, "alice", "abc")


def test_two_studies_may_not_share_a_name(workspace, study):
    with pytest.raises(InputError, match="a reader study named 'Pilot' already exists"):
        create_study(workspace, "ts-other", _images(), "oct-kermany", subset_size=4, name=" Pilot ")
    first = create_study(workspace, "ts", _images(), "oct-kermany", subset_size=4, seed=1)
    second = create_study(workspace, "ts", _images(), "oct-kermany", subset_size=4, seed=1)
    names = {s["id"]: s["name"] for s in list_studies(workspace)}
    assert names[first] == "ts: 4 images, seed 1" and names[second] == "ts: 4 images, seed 1 (2)"


def test_only_the_signed_in_reader_writes_their_session(workspace, study):
    """Issue 21 item 6: staff resumed a reader's session by typing the code and changed a stored answer. Joining,
    answering and closing a session are the reader's own (signed in as that reader); every write is refused to
    staff and to other readers, and nothing stored changes."""
    from core.store.access import ADMIN, READER, RESEARCHER, AccessDenied, Actor
    from core.store.audit_trail import read_trail
    from core.store.access import SHELL

    alice = Actor("alice", READER)
    researcher, admin, bob = Actor("rob", RESEARCHER), Actor("boss", ADMIN), Actor("bob", READER)
    for intruder in (researcher, admin, bob):
        with pytest.raises(AccessDenied):
            join_study(workspace, study, "alice", actor=intruder)
    join_study(workspace, study, "alice", actor=alice)
    first = item_at(workspace, study, "alice", 1).image_id
    record_answer(workspace, study, "alice", first, "CNV", confidence=4, actor=alice)
    for intruder, message in ((researcher, "grade needs the role reader; 'rob' \\(role researcher\\)"),
                              (admin, "grade needs the role reader; 'boss' \\(role admin\\)"),
                              (bob, "only reader 'alice', signed in, may grade as 'alice'; 'bob'")):
        with pytest.raises(AccessDenied, match=message):
            record_answer(workspace, study, "alice", first, "NORMAL", actor=intruder)
        with pytest.raises(AccessDenied):
            end_early(workspace, study, "alice", actor=intruder)
        with pytest.raises(AccessDenied):
            join_study(workspace, study, "alice", actor=intruder)  # no resuming someone else's session either
    assert own_answer(workspace, study, "alice", first) == {"label": "CNV", "confidence": 4}
    assert progress(workspace, study, "alice").status == "reading"
    record_answer(workspace, study, "alice", first, "DME", actor=alice)  # the reader changes their own answer
    end_early(workspace, study, "alice", actor=alice)
    trail = read_trail(workspace, actor=SHELL)
    assert list(trail["action"])[:4] == ["reader_finished", "answer_changed", "answer_stored", "reader_joined"]
    assert set(trail["user"][:4]) == {"alice"} and '"before": "CNV"' in trail["detail"].iloc[1]
