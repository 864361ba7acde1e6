"""The predictions table, owned here: its columns, validation, the `predicted` column, its task, and its parquet file.

One row per (model, test set, image): image_id, label, patient_id, prob_<CLASS>... in task order, predicted, and
for multi-label tasks true_<CLASS>... ; optionally `referred` (the model left the case to a reader). Every metric, plot and comparison reads this table through this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.data.demo import DEMO_TASK
from core.data.tasks import Task, get_task, task_from_dict
from core.errors import InputError
from core.metrics.bootstrap import patient_groups
from core.metrics.dashboard import EvaluationArrays, calls_at_threshold, covers_all_classes
from core.metrics.multiclass import check_probabilities, class_indices
from core.store.files import write_atomically
from core.store.integrity import DIGEST_KEY, DamagedFileError, frame_digest, verify_frame

META_KEY = b"core"  # the parquet schema metadata key holding the table's JSON metadata (task, run_id, ...)
# The task of tables written before the metadata carried one: the built-in demo's.
FALLBACK_TASK = DEMO_TASK
MULTILABEL_THRESHOLD = 0.5  # a label is predicted present when its probability is at least this
LABEL_SEPARATOR = "|"  # multi-label `predicted`: the present labels joined by this
# Where the scores came from (metadata key): absent when `predict` ran a model of this workspace; for scores imported
# from a file (core.infer.imported) {"source": IMPORTED_SOURCE, file_name, sha256, imported_by, imported_at, columns,
# transform, images matched and not, ...}. (The metadata's own "source" names the test set's folder.)
PROVENANCE_KEY = "provenance"
IMPORTED_SOURCE = "imported"


# -- columns ------------------------------------------------------------------------------------------------
def probability_columns(task: Task) -> list[str]:
    return [f"prob_{c}" for c in task.classes]


def truth_columns(task: Task) -> list[str]:
    """Multi-label tasks: one 0/1 column per label."""
    return [f"true_{c}" for c in task.classes]


def check_predictions(df: pd.DataFrame, task: Task) -> None:
    """InputError naming every missing column of a predictions table for this task."""
    if not isinstance(df, pd.DataFrame):
        raise InputError("predictions must be a table (pandas DataFrame)")
    needed = ["image_id", "label", *probability_columns(task)]
    if task.kind == "multilabel":
        needed += truth_columns(task)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"predictions table lacks columns {missing} for task {task.name!r}")
    if len(df) == 0:
        raise InputError("predictions table has no rows")


def patient_ids(df: pd.DataFrame) -> np.ndarray | None:
    """Patient id per row when the table has any; None means each image stands alone."""
    if "patient_id" not in df.columns or df["patient_id"].isna().all():
        return None
    return df["patient_id"].to_numpy(dtype=object)


def probabilities(df: pd.DataFrame, task: Task) -> np.ndarray:
    """The (n, k) probability matrix in task order, checked (rows sum to 1 unless multi-label)."""
    return check_probabilities(df[probability_columns(task)].to_numpy(dtype=float), task.num_classes,
                               rows_sum_to_one=task.kind != "multilabel")


# -- the `predicted` column: the model's call ------------------------------------------------------------------
def _call_indices(probs: np.ndarray, task: Task, threshold: float | None, view=None) -> np.ndarray:
    if threshold is None:
        return probs.argmax(axis=1)
    view = view or task.default_view()
    if view is None or not covers_all_classes(view, task):
        raise InputError(f"task {task.name!r} has no binary view covering every class, so a threshold cannot "
                         "decide its calls")
    return calls_at_threshold(probs, task.classes, view, threshold)


def predicted_classes(probs, task: Task, threshold: float | None = None, view=None) -> np.ndarray:
    """The model's call per image from its probabilities: the one place a call is made.

    Single-label tasks: the most probable class; with `threshold`, `view` (default: the task's default binary
    view) decides the side first (score >= threshold: the most probable positive class, else the most probable
    negative one). Multi-label tasks: the labels with probability >= threshold (default 0.5), joined by "|".
    """
    probs = np.asarray(probs, dtype=float)
    names = np.asarray(task.classes, dtype=object)
    if task.kind == "multilabel":
        cut = MULTILABEL_THRESHOLD if threshold is None else float(threshold)
        return np.array([LABEL_SEPARATOR.join(names[row >= cut]) for row in probs], dtype=object)
    if probs.shape[0] == 0:
        return np.array([], dtype=object)
    return names[_call_indices(probs, task, threshold, view)]


def model_calls(probs, task: Task, operating_point=None) -> np.ndarray:
    """The `predicted` column of a model: its stored operating point (core.metrics.model_operating_point)
    decides when it has one, else the most probable class."""
    if operating_point is None or task.kind == "multilabel":
        return predicted_classes(probs, task)
    return predicted_classes(probs, task, operating_point.threshold, operating_point.binary_view)


# -- the `referred` column: cases the model leaves to a reader ------------------------------------------------
REFERRED_COLUMN = "referred"  # optional bool: the score fell in the model's referral band; `predicted` still holds
# the class call, so everything that reads `predicted` is unchanged. A table without it referred nothing.


def model_referrals(probs, task: Task, operating_point=None, band=None) -> np.ndarray | None:
    """The `referred` column of a model with a referral band (core.metrics.selective) on its operating point's
    view; None when it has none (no band, no operating point, or a multi-label task)."""
    from core.metrics.selective import apply_band, operating_scores

    if band is None or operating_point is None or task.kind == "multilabel":
        return None
    return apply_band(operating_scores(probs, task.classes, operating_point.binary_view), band)


def referred_mask(df: pd.DataFrame) -> np.ndarray:
    """Whether each row was referred to a reader: the `referred` column, all False for a table without it."""
    if REFERRED_COLUMN not in df.columns:
        return np.zeros(len(df), dtype=bool)
    values = df[REFERRED_COLUMN]
    if values.isna().any() or not values.isin([True, False]).all():
        raise InputError(f"predictions column {REFERRED_COLUMN!r} must hold true/false for every row")
    return values.to_numpy(dtype=bool)


def has_referrals(df: pd.DataFrame) -> bool:
    """True when the table records the model's referrals (a model with a referral band wrote it)."""
    return REFERRED_COLUMN in df.columns


def predicted_indices(df: pd.DataFrame, task: Task) -> np.ndarray:
    """Class index of each row's call: the stored `predicted` column, made from the probabilities when absent."""
    if "predicted" in df.columns:
        return class_indices(df["predicted"], task.classes)
    return _call_indices(df[probability_columns(task)].to_numpy(dtype=float), task, None)


def with_predicted(df: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The table with its `predicted` column (the table itself when it has one)."""
    if "predicted" in df.columns:
        return df
    return df.assign(predicted=predicted_classes(df[probability_columns(task)].to_numpy(dtype=float), task))


def predictions_frame(ds, task: Task, probs: np.ndarray, operating_point=None, band=None) -> pd.DataFrame:
    """The predictions table of a Dataset: image_id, label, patient_id, prob_<class>..., predicted (+ true_<class>);
    `predicted` follows the model's operating point when given (model_calls); with a referral band, `referred`
    too (model_referrals)."""
    table = ds.table
    frame = pd.DataFrame({"image_id": table["image_id"].astype(str).to_numpy(),
                          "label": table["label"].astype(str).to_numpy(),
                          "patient_id": table["patient_id"].astype(object).to_numpy()})
    for column, j in zip(probability_columns(task), range(task.num_classes)):
        frame[column] = probs[:, j].astype(np.float64) if len(probs) else np.zeros(0)
    frame["predicted"] = model_calls(probs, task, operating_point)
    referred = model_referrals(probs, task, operating_point, band)
    if referred is not None:
        frame[REFERRED_COLUMN] = referred
    if task.kind == "multilabel":
        for cls, column in zip(task.classes, truth_columns(task)):
            frame[column] = table[cls].astype(int).to_numpy()
    return frame


def is_imported_run(run: dict | None) -> bool:
    """True for the registry row of scores imported from a file (its `mode` is IMPORTED_SOURCE): no model behind it,
    so nothing to run, recalibrate or explain."""
    return bool(run) and run.get("mode") == IMPORTED_SOURCE


def imported_provenance(meta: dict | None) -> dict | None:
    """The provenance of imported scores (who, when, which file, how mapped and transformed), None for a table
    `predict` wrote."""
    provenance = (meta or {}).get(PROVENANCE_KEY)
    return provenance if isinstance(provenance, dict) and provenance.get("source") == IMPORTED_SOURCE else None


# -- its task -----------------------------------------------------------------------------------------------
def task_of(meta: dict | None, *fallback_names: str | None) -> Task:
    """The table's task: the one in its metadata, else the first task name given (run's, test set's), else the
    demo's task (tables written before the metadata carried the task)."""
    meta = meta or {}
    if isinstance(meta.get("task"), dict):
        return task_from_dict(meta["task"], source="predictions metadata")
    return get_task(next((name for name in fallback_names if name), FALLBACK_TASK))


# -- the file -----------------------------------------------------------------------------------------------
def read_predictions(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The predictions table and its metadata (task dict, run_id, dataset_id, classes, created, ...), its values
    checked against the checksum in that metadata (core.store.integrity): DamagedFileError (an InputError) when
    the file is unreadable or damaged."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found")
    try:
        df = pd.read_parquet(path)
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, pa.ArrowException) as exc:
        # a damaged file fails in many ways inside pyarrow and pandas' metadata parsing
        raise DamagedFileError(f"{path}: not a readable predictions table ({exc})") from None
    meta = {}
    if raw:
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            if DIGEST_KEY.encode() in raw:  # written with a checksum: the damage is the file's, not a legacy quirk
                raise DamagedFileError(f"{path}: the predictions file's metadata is damaged") from None
            meta = {}  # damaged metadata without a checksum: the table is still usable with a task given by the caller
    if not isinstance(meta, dict):
        raise DamagedFileError(f"{path}: the predictions file's metadata is damaged (not a JSON object)")
    verify_frame(df, meta, path)
    return df, meta


def scoring_record(images_per_rank: list[int]) -> dict:
    """The metadata saying how the work was shared: `world_size` (processes that scored images; 1 for a plain
    `predict`) and `images_per_rank` (how many images each was given, in rank order; they sum to the images scored,
    those that could not be decoded included). Tables written before these keys existed lack them."""
    counts = [int(n) for n in images_per_rank]
    return {"world_size": len(counts), "images_per_rank": counts}


def write_predictions(frame: pd.DataFrame, path: str | Path, meta: dict) -> Path:
    """Write the table with its metadata, and a checksum of both, atomically (a reader never sees half a file)."""
    meta = {**meta, DIGEST_KEY: frame_digest(frame, meta)}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


# -- as arrays ----------------------------------------------------------------------------------------------
def evaluation_arrays(frame: pd.DataFrame, task: Task) -> EvaluationArrays:
    """Check a predictions table against the task and turn it into arrays (InputError names what is missing)."""
    check_predictions(frame, task)
    probs = probabilities(frame, task)
    if task.kind == "multilabel":
        truth = frame[truth_columns(task)].to_numpy(dtype=float)
        calls = None
    else:
        truth = class_indices(frame["label"], task.classes)
        calls = predicted_indices(frame, task)
    patients = patient_ids(frame)
    codes, groups = patient_groups(patients, len(frame)) if patients is not None else (None, None)
    return EvaluationArrays(task, frame["image_id"].astype(str).to_numpy(dtype=object), truth, probs, calls,
                            codes, patients, groups)
