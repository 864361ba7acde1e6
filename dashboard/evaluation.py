"""Evaluation-page computations cached per predictions file version, task and view (frozen and hashable, so they
are the cache keys themselves), plus the session's view of the active penalty matrix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from core.data.tasks import BinaryView, Task
from core.infer.predictions import evaluation_arrays
from core.metrics import BinaryScores, Interval, ReliabilityBins, reliability_bins, top_label_reliability
from core.metrics import headline
from core.metrics.headline import HEADLINE_RESAMPLES
from core.metrics.dashboard import EvaluationArrays, PrecisionRecall, class_aucs, precision_recall, view_scores
from core.metrics.referral import binary_view_data
from core.metrics.roc import AucEstimate
from core.metrics.run_compare import AlignedRuns
from core.metrics.penalties import Penalty
from core.report.active_penalty import resolve_penalty, save_active_penalty, stored_penalty
from core.store import Workspace
from dashboard.common import PredictionsFile, load_predictions
from dashboard.state import PENALTY_STATE_KEY

# (label, predictions file, task) per run compared on one test set.
RunSources = tuple[tuple[str, PredictionsFile, Task], ...]


# -- metric inputs, each built once per predictions file version ---------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def evaluation_inputs(file: PredictionsFile, task: Task) -> EvaluationArrays:
    """The predictions file as arrays (shared, read-only; rebuilt only when the file changes)."""
    frame, _ = load_predictions(file)
    return evaluation_arrays(frame, task)


@st.cache_resource(show_spinner=False, max_entries=32)
def cached_view_scores(file: PredictionsFile, task: Task, view: BinaryView) -> BinaryScores:
    """Sorted scores of one binary view: after this, any threshold move costs O(log n)."""
    return view_scores(evaluation_inputs(file, task), view)


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_class_aucs(file: PredictionsFile, task: Task, confidence: float = 0.95):
    """One-vs-rest AUC (DeLong) per class or label; threshold-free, so computed once per file."""
    return class_aucs(evaluation_inputs(file, task), confidence)


@st.cache_resource(show_spinner=False, max_entries=32)
def cached_precision_recall(file: PredictionsFile, task: Task, view: BinaryView) -> PrecisionRecall | None:
    scores = cached_view_scores(file, task, view)
    return precision_recall(scores) if scores.n_positive and scores.n_negative else None


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_reliability(file: PredictionsFile, task: Task, view: BinaryView | None = None,
                       n_bins: int = 10) -> ReliabilityBins:
    """Reliability bins of the top-label confidence (view None) or of a binary view's score."""
    arrays = evaluation_inputs(file, task)
    if view is None:
        return top_label_reliability(arrays.truth, arrays.probabilities, n_bins)
    data = binary_view_data(arrays.truth, arrays.probabilities, arrays.task.classes, view)
    return reliability_bins(data.scores, data.truth, n_bins)


# -- headline statistics (core.metrics.headline: the methods the exported report uses) -------------------------
@st.cache_data(show_spinner=False, max_entries=64)
def headline_weighted_error(file: PredictionsFile, task: Task, calls: np.ndarray, penalty: np.ndarray) -> Interval:
    """Weighted error of these calls with its patient-bootstrap interval (cached per calls and matrix)."""
    arrays = evaluation_inputs(file, task)
    return headline.weighted_error(arrays.truth, arrays.probabilities, calls, penalty, arrays.patient_ids)


@st.cache_resource(show_spinner=False, max_entries=8)
def headline_urgent_auc(file: PredictionsFile, task: Task) -> AucEstimate | None:
    arrays = evaluation_inputs(file, task)
    return headline.urgent_auc(arrays.truth, arrays.probabilities, task)


@st.cache_resource(show_spinner="Bootstrapping the macro AUC...", max_entries=8)
def headline_macro_auc(file: PredictionsFile, task: Task) -> Interval:
    """Macro AUC with its patient-bootstrap interval (over labels for multi-label tasks); threshold-free."""
    arrays = evaluation_inputs(file, task)
    if task.kind == "multilabel":
        return headline.label_macro_auc(arrays.truth, arrays.probabilities, arrays.patient_ids)
    return headline.macro_auc(arrays.truth, arrays.probabilities, arrays.patient_ids)


@st.cache_resource(show_spinner="Reading the experts' readings...", max_entries=8)
def _reader_confusions(file: PredictionsFile, task: Task, root: str, test_set_id: str, stamp: tuple) -> dict:
    from core.readers import list_readings, reader_confusions
    from dashboard.common import workspace_at

    readings = list_readings(workspace_at(root), test_set_id)
    if readings.empty:
        return {}
    frame, _ = load_predictions(file)
    return reader_confusions(readings, frame, task)


def stored_reader_confusions(ws: Workspace, file: PredictionsFile, task: Task, test_set_id: str) -> dict:
    """Each reader's confusion counts and the model's on the same images ({} without readings): penalty-free, so
    read and compared once per predictions file version and readings version (core.readers.readings
    .readings_stamp, one small query), never re-read or re-hashed on a penalty edit. Shared: read-only."""
    from core.readers.readings import readings_stamp

    return _reader_confusions(file, task, str(ws.root), test_set_id, readings_stamp(ws, test_set_id))


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_argmax_confusion(file: PredictionsFile, task: Task) -> np.ndarray:
    """Confusion counts of the most probable class (argmax): no penalty moves them (the Penalties page's left
    matrix), so counted once per predictions file version."""
    from core.metrics.penalties import confusion_counts, decide

    arrays = evaluation_inputs(file, task)
    return confusion_counts(arrays.truth, decide(arrays.probabilities, "argmax"), task.num_classes)


@st.cache_resource(show_spinner=False, max_entries=32)
def cached_penalty_effect(file: PredictionsFile, task: Task, penalty: Penalty):
    """core.metrics.penalty_effect.penalty_effect (argmax vs the penalty-minimising rule, with the headline's
    patient-bootstrap intervals) per predictions file and matrix: a page load or a switch back to Penalties with the
    matrix in use does not bootstrap again. Shared: read-only."""
    from core.metrics.penalty_effect import penalty_effect

    arrays = evaluation_inputs(file, task)
    return penalty_effect(arrays.truth, arrays.probabilities, penalty, arrays.patient_codes)


# -- the penalty matrix that follows the user --------------------------------------------------------------
def active_penalty(ws: Workspace, task: Task) -> Penalty:
    """The penalty matrix in use for this task, checked once: this session's, else the workspace's active one (the
    one the exported report uses), else the task's default. Pages pass it on as it is."""
    session = st.session_state.get(PENALTY_STATE_KEY, {}).get(task.name)
    if isinstance(session, Penalty) and session.classes == tuple(task.classes):
        return session
    # rows seeded into the session some other way (a page test): checked once, kept as a Penalty
    edited = None if isinstance(session, Penalty) else stored_penalty(task, "edited", session, "edited")
    if edited is not None:
        st.session_state[PENALTY_STATE_KEY][task.name] = edited
    return edited or resolve_penalty(ws, task)


def set_active_penalty(ws: Workspace, task: Task, name: str, matrix) -> Penalty:
    """Make `matrix` the penalty matrix of this task in this session and in the workspace (experts page, reload)."""
    penalty = save_active_penalty(ws, task, name, matrix)
    st.session_state.setdefault(PENALTY_STATE_KEY, {})[task.name] = replace(penalty, source="edited")
    return penalty


def penalty_presets(ws: Workspace, task: Task) -> dict[str, np.ndarray]:
    """Named matrices to start from: the task's default (the paper's for OCT), uniform, and the user's saved ones."""
    k = task.num_classes
    default = "Kermany et al. 2018 (task default)" if task.name == "oct-kermany" else "Task default"
    presets = {default: task.penalty(), "Uniform: every mistake costs 1": np.ones((k, k)) - np.eye(k)}
    for name, matrix in ws.list_penalties(task.name).items():
        found = stored_penalty(task, name, matrix)
        if found is not None:  # a matrix saved for another class list no longer fits; leave it out
            presets[f"Saved: {name}"] = found.matrix
    return presets


# -- refer when unsure: the model's referrals and their price ----------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def cached_referrals(file: PredictionsFile, task: Task):
    """(referred mask or None for a table without the column, the stored ReferralBand or None) of a predictions
    file, read once per file version."""
    from core.infer.predictions import has_referrals, referred_mask
    from core.metrics.selective import ReferralBand

    frame, meta = load_predictions(file)
    band = ReferralBand.from_dict(meta.get("referral_band"), source="predictions metadata")
    return (referred_mask(frame) if has_referrals(frame) else None), band


def referral_cost(ws: Workspace, task: Task, penalty) -> tuple[np.ndarray, str]:
    """(cost of a referral per true class, where it comes from): the workspace's (Penalties page), else the
    default for the penalty matrix in use."""
    from core.report.referral_cost import resolve_referral_cost

    return resolve_referral_cost(ws, task, penalty)


@st.cache_data(show_spinner=False, max_entries=32)
def headline_weighted_error_referred(file: PredictionsFile, task: Task, calls: np.ndarray, penalty: np.ndarray,
                                     referred: np.ndarray, cost: np.ndarray) -> Interval:
    """Weighted error of these calls with each referral priced at `cost` of its true class (patient bootstrap,
    the headline's resamples)."""
    arrays = evaluation_inputs(file, task)
    return headline.weighted_error(arrays.truth, arrays.probabilities, calls, penalty, arrays.patient_ids,
                                   referred=referred, referral_cost=cost)


# -- a run's training facts (read from its folder by core.train.run_folder) -------------------------------
@st.cache_data(show_spinner="Counting the run's training images per class...", max_entries=16)
def training_class_counts(config: dict) -> tuple[dict | None, str]:
    """Training images per class of a run's config (split and data limit as in training); cached per config."""
    from core.train.run_folder import training_class_counts as counts

    return counts(config)


# -- several runs on one test set ---------------------------------------------------------------------------
@st.cache_resource(show_spinner="Aligning the runs' predictions...", max_entries=8)
def aligned_runs(sources: RunSources) -> AlignedRuns:
    """The selected runs' predictions on their shared images."""
    from core.metrics.run_compare import align_runs

    return align_runs({label: evaluation_inputs(file, task) for label, file, task in sources})


@st.cache_data(show_spinner="Comparing the runs...", max_entries=16)
def comparison_tables(sources: RunSources, view: BinaryView, penalty: np.ndarray, confidence: float = 0.95):
    """(per-run summary, pairwise DeLong/McNemar tests), cached per runs, view and penalty matrix."""
    from core.metrics.run_compare import pairwise_tests, run_summary_table

    aligned = aligned_runs(sources)
    return run_summary_table(aligned, view, penalty, confidence), pairwise_tests(aligned, view, confidence)


@st.cache_resource(show_spinner=False, max_entries=16)
def run_view_scores(sources: RunSources, view: BinaryView) -> dict[str, BinaryScores]:
    """Each run's sorted view scores on the shared images (for the overlaid ROC)."""
    from core.metrics.run_compare import view_curves

    return view_curves(aligned_runs(sources), view)


@st.cache_data(show_spinner="Collecting the report's numbers...", max_entries=16)
def _cached_report(root: str, run_id: str, test_set_id: str, predictions_mtime: float, penalty: Penalty | None,
                   threshold: float | None, include_readers: bool, include_penalties: bool,
                   bootstrap: int, seed: int, confidence: float, lr_ci: str, title: str,
                   readings: pd.DataFrame | None, audit_stamp: tuple = ()) -> dict:
    from core.report import build_report

    return build_report(Workspace.open(root), run_id, test_set_id, penalty=penalty, threshold=threshold,
                        include_readers=include_readers, bootstrap=bootstrap, seed=seed, confidence=confidence,
                        include_penalties=include_penalties, lr_ci=lr_ci,
                        readings=readings, title=title or None)


def session_report(ws: Workspace, run_id: str, test_set_id: str, predictions_mtime: float, task: Task,
                   threshold: float | None, *, include_readers: bool = True, include_penalties: bool = True,
                   bootstrap: int = HEADLINE_RESAMPLES, seed: int = 0, confidence: float = 0.95, lr_ci: str = "log",
                   title: str = "") -> dict:
    """The stakeholder report (core.report.build_report) with the penalty matrix in use in this session and the
    readings stored now, cached per choice: the Report page and presentation mode both show this one."""
    from core.readers import list_readings
    from core.report.caveats import audit_stamp

    single_label = task.kind != "multilabel"
    penalty = active_penalty(ws, task) if single_label else None
    readings = list_readings(ws, test_set_id) if include_readers and single_label else None
    stamp = audit_stamp(ws, test_set_id, (ws.get_run(run_id) or {}).get("dataset_id"))  # caveats of a new audit
    return _cached_report(str(ws.root), run_id, test_set_id, predictions_mtime,
                          penalty,
                          None if threshold is None else float(threshold), bool(include_readers),
                          bool(include_penalties), int(bootstrap), int(seed), float(confidence), lr_ci, title.strip(),
                          readings, stamp)
