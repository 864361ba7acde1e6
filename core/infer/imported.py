"""Scores from elsewhere (a vendor's table, another tool's output) made into an ordinary predictions table.

A CSV or parquet file names each image (`image_id` or a file name) and gives one score column per class (one
column for a two-class task), optionally a `predicted` column. core.infer.score_table reads it, matches its columns
to the task's classes and detects its scores' kind (probabilities, logits, percent), turned into probabilities by
the transform the user chooses; here its rows are aligned to a registered test set's images (images the file names
that the test set lacks, and the reverse, are listed, never dropped in silence) and the import is planned and made.
The result is written by core.infer.predictions (the one owner of the table) with its provenance in the metadata,
and registered under a lightweight "imported" run (no model: mode IMPORTED_MODE).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from core.data.tasks import Task, get_task
from core.errors import InputError
from core.infer.predictions import (IMPORTED_SOURCE, LABEL_SEPARATOR, PROVENANCE_KEY, is_imported_run,
                                    predictions_frame, write_predictions)
from core.infer.score_table import (ColumnMapping, ScoreDetection, ScoreFile, check_mapping, default_transform,
                                    detect_scores, one_column, score_values, suggest_mapping, to_probabilities)
from core.store import Workspace

IMPORTED_MODE = IMPORTED_SOURCE  # the registry's `mode` of a run that is a table of imported scores, not a model
IMPORTED_BACKBONE = "imported scores"
MISMATCH_NAMES_KEPT = 10_000  # image names kept in the metadata per mismatch list (the counts are always exact)


# -- which image is which ----------------------------------------------------------------------------------
_MATCH_KEYS = {"image id": lambda s: s, "file name": lambda s: PurePosixPath(s).name,
               "file name without extension": lambda s: PurePosixPath(s).stem}


@dataclass(frozen=True, eq=False)
class Alignment:
    """How the file's rows meet the test set's images: `file_rows[i]` scores test image `test_rows[i]`."""

    matched_by: str
    file_rows: np.ndarray
    test_rows: np.ndarray
    unmatched_scores: list[str]  # names in the file that no test image has
    missing_images: list[str]  # test images the file gives no score for

    @property
    def n_matched(self) -> int:
        return len(self.test_rows)


def _name(text) -> str:
    name = str(text).strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def align_to_test_set(scores: ScoreFile, id_column: str, test_ids: Sequence[str]) -> Alignment:
    """Match the file's image names to the test set's ids: as ids, else by file name, else by file name without
    extension (whichever matches most; a key two test images share is not used). InputError on empty names,
    names repeated in the file (with their lines) and when nothing matches."""
    names = [_name(v) for v in scores.table[id_column]]
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise InputError(f"column {id_column!r} names no image on {scores.where(empty)}")
    test_ids = [str(t) for t in test_ids]
    best = None
    for how, key in _MATCH_KEYS.items():
        test_keys = [key(t) for t in test_ids]
        counts = pd.Series(test_keys).value_counts()
        lookup = {k: i for i, k in enumerate(test_keys) if counts[k] == 1}
        hits = sum(key(n) in lookup for n in names)
        if best is None or hits > best[2]:
            best = (how, key, hits, lookup)
    how, key, hits, lookup = best
    keys = [key(n) for n in names]
    seen: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        seen.setdefault(k, []).append(i)
    repeated = [rows for rows in seen.values() if len(rows) > 1]
    if repeated:
        shown = "; ".join(f"{names[rows[0]]!r} on {scores.where(rows)}" for rows in repeated[:3])
        raise InputError(f"{len(repeated):,} image(s) appear more than once in the score file ({shown}"
                         f"{' ...' if len(repeated) > 3 else ''}); give one row per image")
    if hits == 0:
        raise InputError(f"none of the {len(names):,} images in the score file is in the test set (e.g. "
                         f"{names[0]!r}; the test set has e.g. {test_ids[0]!r}): is this the right test set?")
    pairs = sorted((lookup[k], i) for i, k in enumerate(keys) if k in lookup)
    test_rows = np.array([t for t, _ in pairs], dtype=int)
    file_rows = np.array([f for _, f in pairs], dtype=int)
    matched = set(file_rows.tolist())
    unmatched = [names[i] for i in range(len(names)) if i not in matched]
    scored = set(test_rows.tolist())
    missing = [t for i, t in enumerate(test_ids) if i not in scored]
    return Alignment(how, file_rows, test_rows, unmatched, missing)


# -- the plan the form previews, and the import ------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ImportPlan:
    """Everything known before importing: the mapping, the detected kind and the transform chosen, the images
    matched and not, and the probabilities the table will hold (test-set order)."""

    scores: ScoreFile
    task: Task
    test_set: dict
    mapping: ColumnMapping
    detection: ScoreDetection
    transform: str
    transform_note: str
    alignment: Alignment
    dataset: object  # core.data.Dataset: the matched test images, in the test set's order
    probabilities: np.ndarray
    predicted: np.ndarray | None = field(default=None)

    def preview(self, rows: int = 10) -> pd.DataFrame:
        """The first rows of the table as it will be imported: image, true label, probabilities, call."""
        return self.frame().head(rows)

    def frame(self) -> pd.DataFrame:
        frame = predictions_frame(self.dataset, self.task, self.probabilities)
        if self.predicted is not None:
            frame["predicted"] = self.predicted
        return frame


def find_test_set(ws: Workspace, test_set: str) -> dict:
    """A registered test set by id, or by name when exactly one has it."""
    record = ws.get_dataset(str(test_set))
    if record is None:
        named = [d for d in ws.list_datasets(role="test_set") if d["name"] == str(test_set)]
        record = named[0] if len(named) == 1 else None
    if record is None:
        raise InputError(f"{test_set}: not a registered test set of workspace {ws.root} (add it with "
                         "`python -m core add-data --role test_set`, or give its id)")
    return record


def _test_dataset(ws: Workspace, record: dict, task: Task):
    from core.data.ingest import load_registered
    from core.infer.predict import _align_to_model  # the one owner of "every label is one of the classes"

    return _align_to_model(load_registered(ws, record["id"], skip_bad=True), {}, task)


def _predicted(scores: ScoreFile, column: str, rows: np.ndarray, task: Task) -> np.ndarray:
    values = scores.table[column].astype(str).str.strip().to_numpy()[rows]
    try:
        if task.kind == "multilabel":
            return np.array([LABEL_SEPARATOR.join(task.canonical_label(p) for p in v.split(LABEL_SEPARATOR) if p)
                             for v in values], dtype=object)
        return np.array([task.canonical_label(v) for v in values], dtype=object)
    except InputError as exc:
        raise InputError(f"column {column!r} (the file's own calls): {exc}") from None


def plan_import(ws: Workspace, scores: ScoreFile, test_set: str | dict, task: Task | str | None = None,
                mapping: ColumnMapping | None = None, transform: str | None = None,
                scores_are: str | None = None) -> ImportPlan:
    """Check and align a score file against a registered test set (InputError naming the first problem).
    task: the test set's when not given. mapping: the suggested one when not given. transform: as given, else
    the default for `scores_are` (probabilities | logits | percent), else the one detection proposes."""
    record = test_set if isinstance(test_set, dict) else find_test_set(ws, test_set)
    task = get_task(task or record["task"])
    mapping = mapping or suggest_mapping(scores.columns, task)
    check_mapping(mapping, scores.columns, task)
    single = one_column(mapping, task)
    values = score_values(scores, mapping)
    detection = detect_scores(values, task, single)
    transform = transform or (default_transform(scores_are, task, single) if scores_are else detection.transform)
    probs, note = to_probabilities(values, task, transform, mapping)
    ds = _test_dataset(ws, record, task)
    alignment = align_to_test_set(scores, mapping.id_column, ds.table["image_id"].astype(str).tolist())
    predicted = (_predicted(scores, mapping.predicted_column, alignment.file_rows, task)
                 if mapping.predicted_column else None)
    return ImportPlan(scores, task, record, mapping, detection, transform, note, alignment,
                      ds.subset(alignment.test_rows), probs[alignment.file_rows], predicted)


@dataclass(frozen=True, eq=False)
class ImportedPredictions:
    run_id: str
    test_set_id: str
    path: Path
    frame: pd.DataFrame
    meta: dict
    reused: bool = False  # the same file, mapping and transform were imported before: that run is returned


def _same_import(ws: Workspace, plan: ImportPlan) -> str | None:
    for run in ws.list_runs(status="succeeded"):
        prior = (run.get("config") or {}).get(IMPORTED_SOURCE) if is_imported_run(run) else None
        if (prior and prior.get("sha256") == plan.scores.sha256 and prior.get("test_set_id") == plan.test_set["id"]
                and prior.get("transform") == plan.transform and prior.get("columns") == plan.mapping.to_dict()
                and ws.find_predictions(run["id"], plan.test_set["id"])):
            return run["id"]
    return None


def import_predictions(ws: Workspace, plan: ImportPlan, *, name: str | None = None, actor=None
                       ) -> ImportedPredictions:
    """Write the plan's table as an ordinary predictions table (core.infer.predictions) under a new "imported"
    run, with its provenance (source, file name and SHA-256, who, when, mapping, transform, unmatched images) in
    the table's metadata and the run's record. Needs the right to make runs (`start_run`)."""
    from core.infer.predictions import read_predictions
    from core.store.access import SHELL, require
    from core.store.audit_trail import record as audit

    actor = actor or SHELL
    require(actor, "start_run")
    test_set_id = plan.test_set["id"]
    prior = _same_import(ws, plan)
    if prior:
        row = ws.find_predictions(prior, test_set_id)
        frame, meta = read_predictions(row["path"])
        return ImportedPredictions(prior, test_set_id, Path(row["path"]), frame, meta, reused=True)
    align = plan.alignment
    now = time.time()
    provenance = {
        "source": IMPORTED_SOURCE, "file_name": plan.scores.name, "sha256": plan.scores.sha256,
        "imported_by": actor.user_id, "imported_at": now, "test_set_id": test_set_id,
        "columns": plan.mapping.to_dict(), "detected": plan.detection.kind, "detection": plan.detection.reason,
        "transform": plan.transform, "transform_note": plan.transform_note, "matched_by": align.matched_by,
        "n_rows_in_file": int(len(plan.scores.table)), "n_matched": align.n_matched,
        "n_unmatched_scores": len(align.unmatched_scores),
        "unmatched_scores": align.unmatched_scores[:MISMATCH_NAMES_KEPT],
        "n_images_without_scores": len(align.missing_images),
        "images_without_scores": align.missing_images[:MISMATCH_NAMES_KEPT],
        "own_calls": bool(plan.predicted is not None)}
    name = (name or "").strip() or f"Imported: {Path(plan.scores.name).stem}"[:120]
    from core.store.workspace import new_id

    config = {"mode": IMPORTED_MODE, "backbone": IMPORTED_BACKBONE, "task": plan.task.name, "name": name,
              IMPORTED_SOURCE: {k: v for k, v in provenance.items() if k not in ("unmatched_scores",
                                                                                 "images_without_scores")}}
    run_id = ws.create_run(config=config, name=name, run_id=new_id(IMPORTED_MODE, name))
    frame = plan.frame()
    meta = {"task": plan.task.to_dict(), "run_id": run_id, "dataset_id": test_set_id,
            "classes": list(plan.task.classes), "created": now, "checkpoint_sha256": None,
            "dataset_fingerprint": plan.test_set.get("fingerprint"), "source": plan.test_set.get("source"),
            "split": None, "n_excluded": len(align.missing_images), "backbone": IMPORTED_BACKBONE,
            "operating_point": None, "referral_band": None, "skipped_images": [], "derived_from": None,
            PROVENANCE_KEY: provenance}
    path = ws.predictions_path(run_id, test_set_id)
    write_predictions(frame, path, meta)
    ws.record_predictions(run_id, test_set_id, path, len(frame))
    ws.update_run(run_id, status="succeeded", started=now, finished=now)
    audit(ws, actor, "predictions_imported", run_id, {"test_set": test_set_id, "file": plan.scores.name,
                                                         "sha256": plan.scores.sha256, "rows": len(frame)})
    return ImportedPredictions(run_id, test_set_id, path, frame, meta)


# -- in words ------------------------------------------------------------------------------------------------
def provenance_text(provenance: dict) -> str:
    """The one sentence naming where imported scores came from and what was done to them (the report's caveat,
    the pages' notice). The file name is user text: callers showing it in a page pass it through `plain`."""
    from core.metrics.threshold_in_use import NO_IMPORTED_POINT

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(provenance.get("imported_at") or 0)))
    columns = (provenance.get("columns") or {}).get("classes") or {}
    text = (f"Scores imported from the file \u201c{provenance.get('file_name')}\u201d (SHA-256 "
            f"{str(provenance.get('sha256'))[:16]}\u2026) by {provenance.get('imported_by')} on {when}; columns "
            + ", ".join(f"{c} = {col}" for c, col in columns.items())
            + f"; scores read as {provenance.get('detected')}, transform: {provenance.get('transform_note')}; "
            f"matched to the test set by {provenance.get('matched_by')}. No model of this workspace made them, so "
            f"how they were produced is not known here, and {NO_IMPORTED_POINT}.")
    missing, extra = int(provenance.get("n_images_without_scores") or 0), int(provenance.get("n_unmatched_scores") or 0)
    if missing:
        text += f" {missing:,} test image(s) had no score and are left out of every number."
    if extra:
        text += f" {extra:,} image(s) named in the file are not in the test set."
    return text
