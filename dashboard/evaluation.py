"""Evaluation-page plumbing: metric inputs cached per predictions file, the active penalty matrix, run facts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from core.data.tasks import BinaryView, Task, task_from_dict
from core.errors import InputError
from core.metrics import BinaryScores, ReliabilityBins, reliability_bins, top_label_reliability
from core.infer.predictions import evaluation_arrays
from core.metrics.dashboard import EvaluationArrays, PrecisionRecall, class_aucs, precision_recall, view_scores
from core.metrics.referral import binary_view_data
from core.store import Workspace
from core.metrics.run_compare import AlignedRuns
from dashboard.common import load_predictions

# st.session_state[PENALTY_STATE_KEY][task name] = matrix (list of rows); the workspace setting ACTIVE_PENALTY_SETTING
# holds {task name: {"name": str, "matrix": [[...]]}} so the experts page and a reload see the same matrix.
PENALTY_STATE_KEY = "penalty_matrix"
ACTIVE_PENALTY_SETTING = "active_penalty"
DEFAULT_PENALTY_NAME = "task default"


def task_key(task: Task) -> str:
    """The task as a string: a cache key that also carries custom tasks."""
    return json.dumps(task.to_dict(), sort_keys=True)


def task_from_json(text: str) -> Task:
    return task_from_dict(json.loads(text))


def file_version(path: str) -> float:
    """The file's modification time: part of every cache key, so a rewritten predictions file is re-read."""
    return Path(path).stat().st_mtime


# -- metric inputs, each built once per (predictions file, version) ----------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def arrays_cached(path: str, mtime: float, task_json: str) -> EvaluationArrays:
    frame, _ = load_predictions(path)
    return evaluation_arrays(frame, task_from_dict(json.loads(task_json)))


def evaluation_inputs(path: str, task: Task) -> EvaluationArrays:
    """The predictions file as arrays (shared, read-only; rebuilt only when the file changes)."""
    return arrays_cached(str(path), file_version(path), task_key(task))


def view_key(view: BinaryView) -> tuple:
    return view.name, tuple(view.positive), tuple(view.negative)


@st.cache_resource(show_spinner=False, max_entries=32)
def scores_cached(path: str, mtime: float, task_json: str, vkey: tuple) -> BinaryScores:
    arrays = arrays_cached(path, mtime, task_json)
    return view_scores(arrays, BinaryView(vkey[0], vkey[1], vkey[2]))


def cached_view_scores(path: str, task: Task, view: BinaryView) -> BinaryScores:
    """Sorted scores of one binary view: after this, any threshold move costs O(log n)."""
    return scores_cached(str(path), file_version(path), task_key(task), view_key(view))


@st.cache_resource(show_spinner=False, max_entries=8)
def _class_aucs(path: str, mtime: float, task_json: str, confidence: float):
    return class_aucs(arrays_cached(path, mtime, task_json), confidence)


def cached_class_aucs(path: str, task: Task, confidence: float = 0.95):
    """One-vs-rest AUC (DeLong) per class or label; threshold-free, so computed once per file."""
    return _class_aucs(str(path), file_version(path), task_key(task), confidence)


@st.cache_resource(show_spinner=False, max_entries=32)
def precision_recall_cached(path: str, mtime: float, task_json: str, vkey: tuple) -> PrecisionRecall | None:
    scores = scores_cached(path, mtime, task_json, vkey)
    return precision_recall(scores) if scores.n_positive and scores.n_negative else None


def cached_precision_recall(path: str, task: Task, view: BinaryView) -> PrecisionRecall | None:
    return precision_recall_cached(str(path), file_version(path), task_key(task), view_key(view))


@st.cache_resource(show_spinner=False, max_entries=16)
def reliability_cached(path: str, mtime: float, task_json: str, vkey: tuple | None,
                 n_bins: int) -> ReliabilityBins:
    arrays = arrays_cached(path, mtime, task_json)
    if vkey is None:
        return top_label_reliability(arrays.truth, arrays.probabilities, n_bins)
    data = binary_view_data(arrays.truth, arrays.probabilities, arrays.task.classes,
                            BinaryView(vkey[0], vkey[1], vkey[2]))
    return reliability_bins(data.scores, data.truth, n_bins)


def cached_reliability(path: str, task: Task, view: BinaryView | None = None, n_bins: int = 10) -> ReliabilityBins:
    """Reliability bins of the top-label confidence (view None) or of a binary view's score."""
    return reliability_cached(str(path), file_version(path), task_key(task), view_key(view) if view else None,
                              int(n_bins))


# -- the penalty matrix that follows the user --------------------------------------------------------------
def active_penalty(ws: Workspace, task: Task) -> tuple[str, np.ndarray]:
    """(name, matrix) of the penalty matrix in use for this task: this session's, else the workspace's, else
    the task's default."""
    k = task.num_classes
    stored = st.session_state.get(PENALTY_STATE_KEY, {}).get(task.name)
    name = st.session_state.get(f"{PENALTY_STATE_KEY}_name", {}).get(task.name)
    if stored is None:
        saved = (ws.get_setting(ACTIVE_PENALTY_SETTING, {}) or {}).get(task.name) or {}
        stored, name = saved.get("matrix"), saved.get("name")
    try:
        matrix = np.asarray(stored, dtype=float)
        if stored is not None and matrix.shape == (k, k) and np.isfinite(matrix).all() and (matrix >= 0).all():
            return name or "edited", matrix
    except (TypeError, ValueError):
        pass  # a damaged setting falls back to the task default rather than breaking the page
    return DEFAULT_PENALTY_NAME, task.penalty()


def set_active_penalty(ws: Workspace, task: Task, name: str, matrix) -> None:
    """Make `matrix` the penalty matrix of this task in this session and in the workspace (experts page, reload)."""
    rows = np.asarray(matrix, dtype=float).tolist()
    st.session_state.setdefault(PENALTY_STATE_KEY, {})[task.name] = rows
    st.session_state.setdefault(f"{PENALTY_STATE_KEY}_name", {})[task.name] = name
    saved = ws.get_setting(ACTIVE_PENALTY_SETTING, {}) or {}
    if saved.get(task.name) != {"name": name, "matrix": rows}:
        saved[task.name] = {"name": name, "matrix": rows}
        ws.set_setting(ACTIVE_PENALTY_SETTING, saved)


# -- facts about a run's training ---------------------------------------------------------------------------
def _run_dir(run: dict | None) -> Path | None:
    return Path(run["run_dir"]) if run and run.get("run_dir") else None


def run_config(run: dict | None) -> dict:
    """The run's resolved config.json (falling back to the registry's copy)."""
    folder = _run_dir(run)
    if folder is not None and (folder / "config.json").is_file():
        try:
            return json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            pass
    return dict((run or {}).get("config") or {})


def run_training_images(run: dict | None) -> int | None:
    """Number of training images the run reported in its summary (None while unknown)."""
    folder = _run_dir(run)
    if folder is None:
        return None
    try:
        summary = json.loads((folder / "summary.json").read_text())
        return int(summary["images"]["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@st.cache_data(show_spinner="Counting the run's training images per class...", max_entries=16)
def _training_counts(run_id: str, config_json: str) -> tuple[dict | None, str]:
    from core.data import load_dataset
    from core.train.config import RunConfig
    from core.train.plan import prepare_data

    try:
        cfg = RunConfig.from_dict(json.loads(config_json))
        ds = load_dataset(cfg.data, task_from_dict(cfg.task) if isinstance(cfg.task, dict) else cfg.task)
        if cfg.dataset_fingerprint:
            # The run recorded its data's fingerprint; hashing every image again (minutes on the full OCT set)
            # would only reproduce it, and the counts below do not depend on it.
            ds._fingerprint = cfg.dataset_fingerprint
        data = prepare_data(cfg, ds)
        targets = data.targets(data.train_rows)
    except (InputError, OSError, ValueError, KeyError) as exc:
        return None, f"the run's training data could not be read ({exc})"
    counts = targets.sum(axis=0) if targets.ndim == 2 else np.bincount(targets, minlength=data.task.num_classes)
    return {c: int(v) for c, v in zip(data.task.classes, counts)}, "the run's training split, as its config selects it"


def training_class_counts(run: dict | None) -> tuple[dict | None, str]:
    """Training images per class of a run (rebuilt from its config: split and data limit as in training)."""
    if not run:
        return None, "no run selected"
    config = run_config(run)
    if not config.get("data"):
        return None, "the run's config names no training data"
    return _training_counts(run["id"], json.dumps(config, sort_keys=True))


def recorded_balance(run: dict | None) -> dict | None:
    """Class weights or sampler counts if the trainer recorded them in events.jsonl (newest record wins)."""
    folder = _run_dir(run)
    if folder is None:
        return None
    from core.train.events import read_events

    found = None
    for record in read_events(folder):
        keys = {k: record[k] for k in ("class_weights", "sampler_counts") if k in record}
        if keys:
            found = keys
    return found


def penalty_presets(ws: Workspace, task: Task) -> dict[str, np.ndarray]:
    """Named matrices to start from: the task's default (the paper's for OCT), uniform, and the user's saved ones."""
    k = task.num_classes
    default = "Kermany et al. 2018 (task default)" if task.name == "oct-kermany" else "Task default"
    presets = {default: task.penalty(), "Uniform: every mistake costs 1": np.ones((k, k)) - np.eye(k)}
    for name, matrix in ws.list_penalties(task.name).items():
        try:
            values = np.asarray(matrix, dtype=float)
        except (TypeError, ValueError):
            continue
        if values.shape == (k, k):  # a matrix saved for another class list no longer fits; leave it out
            presets[f"Saved: {name}"] = values
    return presets


@st.cache_data(show_spinner="Reading the experts' readings...", max_entries=8)
def cached_reader_confusions(path: str, mtime: float, task_json: str, readings) -> dict:
    """Each reader's confusion counts and the model's on the same images (penalty-free; cached per readings)."""
    from core.readers import reader_confusions

    frame, _ = load_predictions(path)
    return reader_confusions(readings, frame, task_from_dict(json.loads(task_json)))


def reader_confusions_for(path: str, task: Task, readings) -> dict:
    return cached_reader_confusions(str(path), file_version(path), task_key(task), readings)


# -- several runs on one test set ---------------------------------------------------------------------------
@st.cache_resource(show_spinner="Aligning the runs' predictions...", max_entries=8)
def _aligned(sources: tuple) -> AlignedRuns:
    from core.metrics.run_compare import align_runs

    runs = {}
    for label, path, mtime, task_json in sources:
        runs[label] = arrays_cached(path, mtime, task_json)
    return align_runs(runs)


def aligned_runs(paths: dict[str, str], tasks: dict[str, Task]):
    """The selected runs' predictions on their shared images (label -> predictions path / task)."""
    sources = tuple((label, str(path), file_version(path), task_key(tasks[label])) for label, path in paths.items())
    return _aligned(sources)


@st.cache_data(show_spinner="Comparing the runs...", max_entries=16)
def _comparison_tables(sources: tuple, vkey: tuple, penalty_rows: tuple, confidence: float):
    from core.metrics.run_compare import pairwise_tests, run_summary_table

    aligned = _aligned(sources)
    view = BinaryView(vkey[0], vkey[1], vkey[2])
    penalty = np.asarray(penalty_rows, dtype=float)
    return run_summary_table(aligned, view, penalty, confidence), pairwise_tests(aligned, view, confidence)


def comparison_tables(paths: dict[str, str], tasks: dict[str, Task], view: BinaryView, penalty,
                      confidence: float = 0.95):
    """(per-run summary, pairwise DeLong/McNemar tests), cached per runs, view and penalty matrix."""
    sources = tuple((label, str(path), file_version(path), task_key(tasks[label])) for label, path in paths.items())
    rows = tuple(tuple(float(x) for x in row) for row in np.asarray(penalty, dtype=float))
    return _comparison_tables(sources, view_key(view), rows, confidence)


@st.cache_resource(show_spinner=False, max_entries=16)
def _run_curves(sources: tuple, vkey: tuple) -> dict:
    from core.metrics.run_compare import view_curves

    return view_curves(_aligned(sources), BinaryView(vkey[0], vkey[1], vkey[2]))


def run_view_scores(paths: dict[str, str], tasks: dict[str, Task], view: BinaryView) -> dict[str, BinaryScores]:
    """Each run's sorted view scores on the shared images (for the overlaid ROC)."""
    sources = tuple((label, str(path), file_version(path), task_key(tasks[label])) for label, path in paths.items())
    return _run_curves(sources, view_key(view))
