"""In-app reader study: blinded, seeded per-reader order, every answer committed to SQLite (WAL) as it is given."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.tasks import Task, get_task, task_from_dict
from core.errors import InputError
from core.readers.auth import authenticate_reader
from core.readers.blinding import (ENDED_EARLY, FINISHED, READING, BlindingError, check_join, partner_still_open,
                                   session_owner)
from core.store import audit_trail
from core.store.access import (SHELL, Actor, clean_reader_code, is_formal_study, mark_formal_study, require,
                               require_own_reading)
from core.readers.readings import READINGS_COLUMNS
from core.readers.schema import ensure_schema
from core.readers.tables import reader_report
from core.store import Workspace, new_id

CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)  # 1 = a guess ... 5 = certain

@dataclass(frozen=True)
class Item:
    """What a reader is served: the image and where they are. Never the truth or the model's output.

    `image_id` and `path` are for loading the image, not for showing: file names can carry the diagnosis
    (Kermany's CLASS-PATIENT-N.jpeg), so pages show `caption` instead.
    """

    image_id: str
    path: str | None
    position: int  # 1-based place in this reader's order
    total: int

    @property
    def caption(self) -> str:
        return f"Image {self.position} of {self.total}"


@dataclass(frozen=True)
class ReaderSession:
    study_id: str
    reader_id: str
    status: str
    answered: int
    total: int
    resumed: bool  # True when the reader had joined before (a closed tab, a restart)


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    status: str
    next_position: int | None  # None when every image has an answer

    @property
    def fraction(self) -> float:
        return self.answered / self.total if self.total else 1.0

    @property
    def done(self) -> bool:
        return self.status != READING


@dataclass(frozen=True)
class Study:
    id: str
    name: str
    test_set_id: str
    task: Task
    subset_size: int
    seed: int
    created: float
    archived: float | None = None  # when staff archived it (hidden from the pickers, kept)


def stable_seed(*parts) -> int:
    """A seed that is the same in every process and Python run (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _images_table(images, task: Task) -> pd.DataFrame:
    table = getattr(images, "table", images)  # a core.data Dataset or its table
    if isinstance(table, pd.DataFrame):
        if "image_id" not in table.columns:
            raise InputError("study images: the table needs an image_id column")
        out = pd.DataFrame({"image_id": table["image_id"].astype(str)})
        out["path"] = table["path"].astype(str) if "path" in table.columns else None
        out["truth"] = ([task.canonical_label(v) for v in table["label"]] if "label" in table.columns else None)
    else:
        out = pd.DataFrame({"image_id": [str(i) for i in images], "path": None, "truth": None})
    if out.empty:
        raise InputError("study images: no images given")
    if out["image_id"].duplicated().any():
        dup = sorted(out.loc[out["image_id"].duplicated(), "image_id"].unique())[:5]
        raise InputError(f"study images: image ids repeat, e.g. {dup}")
    return out


def _subset(table: pd.DataFrame, subset_size: int, seed: int) -> pd.DataFrame:
    """A seeded subset, stratified by the true class when the truth is known (so every class is shown)."""
    if subset_size >= len(table):
        return table
    rng = np.random.default_rng(stable_seed("subset", seed))
    if table["truth"].notna().all():
        from sklearn.model_selection import train_test_split
        try:
            chosen, _ = train_test_split(table.index.to_numpy(), train_size=subset_size,
                                         stratify=table["truth"].to_numpy(), random_state=seed)
            return table.loc[sorted(chosen)]
        except ValueError:
            pass  # a class too small to stratify: fall back to a plain random subset
    return table.loc[sorted(rng.choice(table.index.to_numpy(), size=subset_size, replace=False))]


def create_study(ws: Workspace, test_set_id: str, images, task: str | Task, subset_size: int | None = None,
                 seed: int = 0, name: str = "", *, formal: bool = False, actor: Actor = SHELL) -> str:
    """Create a reader study over a test set. `images`: a Dataset, a table with image_id[, path, label] or a
    list of image ids; the truth (label), when given, is stored but never served while reading. A `formal`
    study admits only readers with a password."""
    require(actor, "create_study")
    task = get_task(task)
    if task.kind == "multilabel":
        raise InputError(f"task {task.name!r}: reader studies need one label per image (not multi-label)")
    table = _images_table(images, task)
    size = len(table) if subset_size is None else int(subset_size)
    if not 1 <= size <= len(table):
        raise InputError(f"subset size must be between 1 and {len(table)} (the test set's size), got {subset_size}")
    chosen = _subset(table, size, int(seed))
    study_id = new_id("study", name)
    chosen_name = bool(name.strip())
    name = name.strip() or f"{test_set_id}: {size} images, seed {seed}"
    with ws.connect() as con:
        ensure_schema(con)
        if chosen_name:
            refuse_taken_name(con, name)
        default, copy = name, 2
        while study_named(con, name) is not None:  # a default name is numbered instead of refused
            name, copy = f"{default} ({copy})", copy + 1
        con.execute("INSERT INTO reader_studies (id, name, test_set_id, task, subset_size, seed, created) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (study_id, name, test_set_id, json.dumps(task.to_dict()), size, int(seed), time.time()))
        con.executemany("INSERT INTO study_items (study_id, image_id, path, truth) VALUES (?,?,?,?)",
                        [(study_id, r.image_id, None if pd.isna(r.path) else r.path,
                          None if pd.isna(r.truth) else r.truth) for r in chosen.itertuples(index=False)])
        audit_trail.record(ws, actor, "study_created", f"reader study {study_id}",
                           {"name": name, "test_set": test_set_id, "images": size, "seed": int(seed),
                            "formal": bool(formal)}, con=con)
    if formal:
        mark_formal_study(ws, study_id, actor=actor)
    return study_id


def study_named(con, name: str, other_than: str | None = None) -> str | None:
    """The name of a study (other than `other_than`) called `name`, case and surrounding spaces ignored."""
    row = con.execute("SELECT name FROM reader_studies WHERE lower(trim(name))=lower(trim(?)) AND id IS NOT ?",
                      (name, other_than)).fetchone()
    return None if row is None else row[0]


def refuse_taken_name(con, name: str, other_than: str | None = None) -> None:
    """Readers pick a study by its name: two studies of one name could not be told apart."""
    if study_named(con, name, other_than) is not None:
        raise InputError(f"a reader study named {name.strip()!r} already exists: choose another name")


def _study(con, study_id: str) -> Study:
    row = con.execute("SELECT * FROM reader_studies WHERE id=?", (study_id,)).fetchone()
    if row is None:
        raise InputError(f"reader study {study_id!r} does not exist")
    return Study(row["id"], row["name"], row["test_set_id"], task_from_dict(json.loads(row["task"])),
                 row["subset_size"], row["seed"], row["created"], row["archived"])


def _open_study(con, study_id: str) -> Study:
    """The study, refused when archived: an archived study takes no more readers and no more answers."""
    study = _study(con, study_id)
    if study.archived is not None:
        raise InputError(f"reader study {study.name!r} was archived: it takes no more readers or answers "
                         "(staff can restore it on the Reader study page)")
    return study


def get_study(ws: Workspace, study_id: str) -> Study:
    with ws.connect() as con:
        ensure_schema(con)
        return _study(con, study_id)


def list_studies(ws: Workspace, test_set_id: str | None = None, *, include_archived: bool = False) -> list[dict]:
    """Studies (newest first) with how many readers joined and finished; archived ones only when asked."""
    with ws.connect() as con:
        ensure_schema(con)
        rows = con.execute(
            "SELECT s.id, s.name, s.test_set_id, s.subset_size, s.seed, s.created, s.archived, "
            "json_extract(s.task, '$.name') AS task, COUNT(r.reader_id) AS n_readers, "
            "SUM(CASE WHEN r.status != 'reading' THEN 1 ELSE 0 END) AS n_done "
            "FROM reader_studies s LEFT JOIN readers r ON r.study_id = s.id "
            "WHERE (? IS NULL OR s.test_set_id = ?) AND (? OR s.archived IS NULL) "
            "GROUP BY s.id ORDER BY s.created DESC",
            (test_set_id, test_set_id, include_archived)).fetchall()
    return [{**dict(r), "n_done": int(r["n_done"] or 0)} for r in rows]


def _reader(con, study_id: str, reader_id: str):
    row = con.execute("SELECT * FROM readers WHERE study_id=? AND reader_id=?", (study_id, reader_id)).fetchone()
    if row is None:
        raise InputError(f"reader {reader_id!r} has not joined study {study_id!r}")
    return row


def _answered(con, study_id: str, reader_id: str) -> set[str]:
    return {r["image_id"] for r in con.execute(
        "SELECT image_id FROM answers WHERE study_id=? AND reader_id=?", (study_id, reader_id))}


def _require_owner(con, actor: Actor, study_id: str, reader_id: str) -> None:
    """Only the reader whose session this is (signed in as themself) writes it: never staff on their behalf.
    An aided-vs-unaided session code ("<code> [unaided]") belongs to reader <code>."""
    require_own_reading(actor, session_owner(con, study_id, reader_id))


def join_study(ws: Workspace, study_id: str, reader_id: str, password: str | None = None, *,
               actor: Actor = SHELL) -> ReaderSession:
    """Identify a reader and open (or resume) their session. Their order is a permutation of the study's
    images seeded by (study seed, reader code): stable across restarts, different between readers. Only that
    reader, signed in, may (`actor`; the server's shell may for scripts)."""
    reader_id = clean_reader_code(reader_id)
    with ws.connect() as con:
        ensure_schema(con)
        _require_owner(con, actor, study_id, reader_id)
        owner = session_owner(con, study_id, reader_id)
    authenticate_reader(ws, reader_id, password, required=is_formal_study(ws, study_id), actor=actor, owner=owner)
    with ws.connect() as con:
        ensure_schema(con)
        study = _open_study(con, study_id)
        row = con.execute("SELECT * FROM readers WHERE study_id=? AND reader_id=?", (study_id, reader_id)).fetchone()
        if row is not None:
            order = json.loads(row["item_order"])
            return ReaderSession(study_id, reader_id, row["status"], len(_answered(con, study_id, reader_id)),
                                 len(order), resumed=True)
        check_join(con, study_id, reader_id)
        # One source of readings per reader and test set, so a study never overwrites an import.
        clash = con.execute("SELECT source FROM readings WHERE test_set_id=? AND reader_id=? LIMIT 1",
                            (study.test_set_id, reader_id)).fetchone()
        other = con.execute("SELECT r.study_id FROM readers r JOIN reader_studies s ON s.id = r.study_id "
                            "WHERE s.test_set_id=? AND r.reader_id=? LIMIT 1",
                            (study.test_set_id, reader_id)).fetchone()
        if clash is not None or other is not None:
            where = f"readings from {clash['source']}" if clash is not None else f"study {other['study_id']}"
            raise InputError(f"reader code {reader_id!r} already has {where} on this test set; use another code")
        base = sorted(r["image_id"] for r in con.execute("SELECT image_id FROM study_items WHERE study_id=?",
                                                          (study_id,)))
        rng = np.random.default_rng(stable_seed("order", study.seed, reader_id))
        order = [base[i] for i in rng.permutation(len(base))]
        con.execute("INSERT INTO readers (study_id, reader_id, status, item_order, joined) VALUES (?,?,?,?,?)",
                    (study_id, reader_id, READING, json.dumps(order), time.time()))
        audit_trail.record(ws, actor, "reader_joined", f"reader study {study_id}", {"reader": reader_id}, con=con)
    return ReaderSession(study_id, reader_id, READING, 0, len(order), resumed=False)


def _progress(con, study_id: str, reader_id: str) -> tuple[Progress, list[str]]:
    row = _reader(con, study_id, reader_id)
    order = json.loads(row["item_order"])
    answered = _answered(con, study_id, reader_id)
    nxt = next((i + 1 for i, image in enumerate(order) if image not in answered), None)
    return Progress(len(answered), len(order), row["status"], nxt), order


def progress(ws: Workspace, study_id: str, reader_id: str) -> Progress:
    with ws.connect() as con:
        ensure_schema(con)
        return _progress(con, study_id, str(reader_id).strip())[0]


def _item(con, study_id: str, order: list[str], position: int) -> Item:
    if not 1 <= int(position) <= len(order):
        raise InputError(f"position must be between 1 and {len(order)}, got {position}")
    image_id = order[int(position) - 1]
    path = con.execute("SELECT path FROM study_items WHERE study_id=? AND image_id=?",
                       (study_id, image_id)).fetchone()["path"]
    return Item(image_id, path, int(position), len(order))


def item_at(ws: Workspace, study_id: str, reader_id: str, position: int) -> Item:
    """The item at a 1-based position of this reader's order (to go back to an earlier image)."""
    with ws.connect() as con:
        ensure_schema(con)
        order = json.loads(_reader(con, study_id, str(reader_id).strip())["item_order"])
        return _item(con, study_id, order, position)


def next_item(ws: Workspace, study_id: str, reader_id: str) -> Item | None:
    """The first image in this reader's order without an answer; None when all are answered or the
    reader has finished. Resuming after a crash is just calling this again."""
    with ws.connect() as con:
        ensure_schema(con)
        prog, order = _progress(con, study_id, str(reader_id).strip())
        if prog.done or prog.next_position is None:
            return None
        return _item(con, study_id, order, prog.next_position)


def own_answer(ws: Workspace, study_id: str, reader_id: str, image_id: str) -> dict | None:
    """The reader's own earlier answer to one image (label, confidence), to pre-select it on going back."""
    reader_id = str(reader_id).strip()
    with ws.connect() as con:
        ensure_schema(con)
        status = con.execute("SELECT status FROM readers WHERE study_id=? AND reader_id=?",
                             (study_id, reader_id)).fetchone()
        if status is not None and status["status"] != READING and partner_still_open(con, study_id, reader_id):
            raise BlindingError(f"reader {reader_id!r}: earlier answers stay hidden until both sessions of the "
                                "aided-vs-unaided study are closed")
        row = con.execute("SELECT label, confidence FROM answers WHERE study_id=? AND reader_id=? AND image_id=?",
                          (study_id, reader_id, str(image_id))).fetchone()
    return dict(row) if row else None


def record_answer(ws: Workspace, study_id: str, reader_id: str, image_id: str, label: str,
                  confidence: int | None = None, seconds: float | None = None, *, actor: Actor = SHELL) -> None:
    """Commit one answer now (WAL). Answering the same image again updates the same row. Only the reader
    `reader_id`, signed in (`actor`), may answer: staff never answer or change an answer as a reader (the
    server's shell may, for scripts). Each answer stored or changed goes into the audit trail with it."""
    reader_id = str(reader_id).strip()
    if confidence is not None and confidence not in CONFIDENCE_LEVELS:
        raise InputError(f"confidence must be one of {CONFIDENCE_LEVELS} (1 = a guess, 5 = certain), "
                         f"got {confidence!r}")
    confidence = None if confidence is None else int(confidence)
    if seconds is not None:
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise InputError(f"seconds must be a non-negative number, got {seconds!r}")
    with ws.connect() as con:
        ensure_schema(con)
        _require_owner(con, actor, study_id, reader_id)
        study = _open_study(con, study_id)
        row = _reader(con, study_id, reader_id)
        if row["status"] != READING:
            raise InputError(f"reader {reader_id!r} has finished study {study_id!r}; answers are locked")
        if str(image_id) not in set(json.loads(row["item_order"])):
            raise InputError(f"image {image_id!r} is not in reader {reader_id!r}'s list for this study")
        label = study.task.canonical_label(label)
        before = con.execute("SELECT label FROM answers WHERE study_id=? AND reader_id=? AND image_id=?",
                             (study_id, reader_id, str(image_id))).fetchone()
        changed = before is not None and before["label"] != label
        audit_trail.record(ws, actor, "answer_changed" if changed else "answer_stored", f"reader study {study_id}",
                           {"reader": reader_id, "image": str(image_id), "label": label, "confidence": confidence,
                            **({"before": before["label"]} if changed else {})}, con=con)
        con.execute(
            "INSERT INTO answers (study_id, reader_id, image_id, label, confidence, seconds, answered) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT (study_id, reader_id, image_id) DO UPDATE SET "
            "changes = answers.changes + (answers.label != excluded.label), label = excluded.label, "
            "confidence = excluded.confidence, seconds = COALESCE(excluded.seconds, answers.seconds), "
            "answered = excluded.answered",
            (study_id, reader_id, str(image_id), label, confidence, seconds, time.time()))


def _close(ws: Workspace, study_id: str, reader_id: str, status: str, actor: Actor) -> ReaderSession:
    reader_id = str(reader_id).strip()
    with ws.connect() as con:
        ensure_schema(con)
        _require_owner(con, actor, study_id, reader_id)
        study = _study(con, study_id)
        prog, order = _progress(con, study_id, reader_id)
        if prog.status != READING:
            return ReaderSession(study_id, reader_id, prog.status, prog.answered, prog.total, resumed=True)
        if status == FINISHED and prog.answered < prog.total:
            raise InputError(f"{prog.total - prog.answered} image(s) not graded yet; grade them or end early")
        con.execute("UPDATE readers SET status=?, finished=? WHERE study_id=? AND reader_id=?",
                    (status, time.time(), study_id, reader_id))
        # The finished reader's answers become readings of the test set, in the same transaction.
        now = time.time()
        con.execute(
            "INSERT INTO readings (test_set_id, reader_id, image_id, label, seconds, source, created) "
            "SELECT ?, reader_id, image_id, label, seconds, ?, ? FROM answers WHERE study_id=? AND reader_id=?",
            (study.test_set_id, f"study:{study_id}", now, study_id, reader_id))
        audit_trail.record(ws, actor, "reader_finished", f"reader study {study_id}",
                           {"reader": reader_id, "status": status, "answered": prog.answered, "total": prog.total},
                           con=con)
    return ReaderSession(study_id, reader_id, status, prog.answered, prog.total, resumed=False)


def finish(ws: Workspace, study_id: str, reader_id: str, *, actor: Actor = SHELL) -> ReaderSession:
    """Close a reader's session once every image has an answer; their readings join the test set's. Only that
    reader (`actor`) may."""
    return _close(ws, study_id, reader_id, FINISHED, actor)


def end_early(ws: Workspace, study_id: str, reader_id: str, *, actor: Actor = SHELL) -> ReaderSession:
    """Close a reader's session now; they are analysed on the images they graded. Only that reader may."""
    return _close(ws, study_id, reader_id, ENDED_EARLY, actor)


def study_progress(ws: Workspace, study_id: str, *, actor: Actor = SHELL) -> pd.DataFrame:
    """Staff's view of a study: per reader code, status and how many images are graded (never the answers):
    reader_id, status, answered, total, joined, finished (epoch seconds)."""
    require(actor, "view_results")
    with ws.connect() as con:
        ensure_schema(con)
        _study(con, study_id)
        rows = con.execute(
            "SELECT r.reader_id, r.status, json_array_length(r.item_order) AS total, r.joined, r.finished, "
            "(SELECT COUNT(*) FROM answers a WHERE a.study_id = r.study_id AND a.reader_id = r.reader_id) "
            "AS answered FROM readers r WHERE r.study_id=? ORDER BY r.joined", (study_id,)).fetchall()
    columns = ["reader_id", "status", "answered", "total", "joined", "finished"]
    return pd.DataFrame([{c: r[c] for c in columns} for r in rows], columns=columns)


def _require_done(con, study_id: str, reader_id: str) -> None:
    row = con.execute("SELECT status FROM readers WHERE study_id=? AND reader_id=?", (study_id, reader_id)).fetchone()
    if row is None or row["status"] == READING:
        raise BlindingError(f"reader {reader_id!r}: results, truth and other readers' answers are shown only "
                            f"after finishing (or ending early)")
    if partner_still_open(con, study_id, reader_id):
        raise BlindingError(f"reader {reader_id!r}: in an aided-vs-unaided study, results and truth are shown "
                            "only after both sessions are closed")


def study_readings(ws: Workspace, study_id: str, *, requesting_reader: str | None = None) -> pd.DataFrame:
    """Answers of the readers who have finished (or ended early): reader_id, image_id, label, seconds,
    confidence. Asked on behalf of a reader, refused (BlindingError) until that reader is done."""
    with ws.connect() as con:
        ensure_schema(con)
        _study(con, study_id)
        if requesting_reader is not None:
            _require_done(con, study_id, str(requesting_reader).strip())
        rows = con.execute(
            "SELECT a.reader_id, a.image_id, a.label, a.seconds, a.confidence FROM answers a "
            "JOIN readers r ON r.study_id = a.study_id AND r.reader_id = a.reader_id "
            "WHERE a.study_id=? AND r.status != ? ORDER BY a.reader_id, a.image_id", (study_id, READING)).fetchall()
    out = pd.DataFrame([dict(r) for r in rows], columns=[*READINGS_COLUMNS, "confidence"])
    out["seconds"] = out["seconds"].astype(float)
    return out


def study_truth(ws: Workspace, study_id: str, reader_id: str) -> pd.DataFrame:
    """The study's truth (image_id, label), refused (BlindingError) until `reader_id` is done."""
    with ws.connect() as con:
        ensure_schema(con)
        _require_done(con, study_id, str(reader_id).strip())
        rows = con.execute("SELECT image_id, truth AS label FROM study_items WHERE study_id=? AND truth IS NOT NULL "
                           "ORDER BY image_id", (study_id,)).fetchall()
    return pd.DataFrame([dict(r) for r in rows], columns=["image_id", "label"])


def reader_results(ws: Workspace, study_id: str, reader_id: str, predictions: pd.DataFrame | None = None,
                   **options) -> dict:
    """A finished reader's results (confusion matrix, sensitivity/specificity, LRs, weighted error and, with
    the model's predictions, the model at its operating point and agreement). Raises BlindingError before the
    reader has finished or ended early. `options` go to `core.readers.tables.reader_report`."""
    reader_id = str(reader_id).strip()
    truth = study_truth(ws, study_id, reader_id)  # raises BlindingError first
    readings = study_readings(ws, study_id, requesting_reader=reader_id)
    readings = readings[readings["reader_id"] == reader_id]
    study = get_study(ws, study_id)
    if truth.empty:
        if predictions is None:
            raise InputError(f"study {study_id!r} stored no truth; give the model's predictions table")
        truth = predictions[["image_id", "label"]]
    with ws.connect() as con:
        n_items = con.execute("SELECT COUNT(*) FROM study_items WHERE study_id=?", (study_id,)).fetchone()[0]
        status = _reader(con, study_id, reader_id)["status"]
    report = reader_report(readings, truth, study.task, predictions=predictions, n_in_set=n_items, **options)
    return {"study_id": study_id, "reader_id": reader_id, "status": status, **report}
