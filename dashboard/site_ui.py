"""The site check on the Test sets and Performance pages: whether this test set looks shifted for this run (one
owner: core.infer.site_check), the two remedies side by side, and the sentence naming the adaptation behind a run's
calls. Computes nothing itself; every access decision is core's."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.tasks import Task
from core.errors import InputError
from core.infer.site_check import (ADAPT_CHOICES, SiteCheck, adaptation_text, audit_shift, combine, prevalence_check,
                                   read_card)
from core.metrics.model_operating_point import ModelOperatingPoint
from core.metrics.sample_size import REFIT_SIZES, threshold_precision
from core.store import Workspace
from dashboard import state
from dashboard.common import PredictionsFile, load_predictions
from dashboard.evaluation import evaluation_inputs
from dashboard.widgets import plain

SHIFT_WARNING = ("This test set looks different from the training images ({reasons}). The model's calls may not "
                 "hold here: its stored threshold was chosen on the training site.")


@st.cache_resource(show_spinner="Estimating the test set's prevalence without labels...", max_entries=16)
def _cached_prevalence(file: PredictionsFile, task: Task, root: str, run_id: str):
    """The prevalence part of the check: threshold-free, so once per predictions file version and run."""
    ws = Workspace.open(root)
    try:
        card = read_card(ws, run_id)
    except InputError:
        card = None  # a damaged card: the page names it; the audit's part of the check still stands
    arrays = evaluation_inputs(file, task)
    calls = arrays.model_calls if arrays.model_calls is not None else arrays.probabilities.argmax(axis=1)
    return prevalence_check(arrays.probabilities, calls, task, card, arrays.patient_codes)


def site_check(ws: Workspace, run: dict, test_set_id: str, file: PredictionsFile, task: Task) -> SiteCheck:
    """core.infer.site_check's verdict, the prevalence part cached (the audit's part is read fresh: it may land)."""
    prevalence = None if task.kind == "multilabel" else _cached_prevalence(file, task, str(ws.root), run["id"])
    shift = audit_shift(ws, test_set_id, run.get("dataset_id"))
    return combine(run["id"], test_set_id, task, shift, prevalence)


def precision_table(point: ModelOperatingPoint | None, truth, task: Task) -> pd.DataFrame | None:
    """How precisely N labelled images pin sensitivity and specificity (Wilson half-width) at the model's own
    sensitivity and specificity and this test set's class mix; None without an operating point."""
    if point is None:
        return None
    positive = [task.class_index(c) for c in point.positive]
    share = float(pd.Series(truth).isin(positive).mean())
    if not 0.0 < share < 1.0:
        return None
    rows = threshold_precision(point.sensitivity, point.specificity, share, REFIT_SIZES)
    return pd.DataFrame([{"labelled images": r.n, "positive / negative (expected)":
                          f"{r.n_positive:.0f} / {r.n_negative:.0f}",
                          "sensitivity ±": f"{r.sensitivity_half_width:.2f}",
                          "specificity ±": f"{r.specificity_half_width:.2f}"} for r in rows])


def adaptation_notice(card: dict | None, run: dict | None, container=None) -> str | None:
    """The sentence naming the adaptation behind this run's calls (core.infer.site_check.adaptation_text), shown
    as a notice; returns it (None for a run that was neither adapted nor recalibrated)."""
    text = adaptation_text(card, (run or {}).get("name"))
    if text:
        (container or st).info(plain(text), icon=":material/tune:")
    return text


def _adapt(ws: Workspace, run_id: str, test_set_id: str, key: str, run_key: str) -> None:
    """Button callback (runs before the page, so it may select the new run in the page's run picker)."""
    from core.infer.site_check import adapt_to_test_set
    from dashboard.access_ui import current_actor
    from dashboard.common import remember_selection

    choice = st.session_state.get(state.companion_key(key, "adapt_method"))
    method = ADAPT_CHOICES.get(choice, next(iter(ADAPT_CHOICES.values())))
    try:
        with st.spinner("Adapting without labels and running the new run on this test set..."):
            adaptation = adapt_to_test_set(ws, run_id, test_set_id, actor=current_actor(), method=method)
    except InputError as exc:
        st.session_state[state.companion_key(key, "adapt_error")] = str(exc)
        return
    new_run = adaptation.run_id
    st.session_state[run_key] = new_run
    remember_selection(run_id=new_run, test_set_id=test_set_id)
    st.session_state[state.companion_key(key, "adapted")] = new_run


def site_section(ws: Workspace, run: dict, test_set_id: str, key: str, run_key: str, card: dict | None,
                 recalibrate=None) -> bool:
    """The check's verdict for this run on this test set; when flagged, the warning and the two remedies side by
    side. `recalibrate()` draws the labelled re-fit panel (the page's own) in the right-hand column. Returns whether it was drawn."""
    record = ws.find_predictions(run["id"], test_set_id)
    if record is None:
        return False
    error = st.session_state.pop(state.companion_key(key, "adapt_error"), None)
    if error:
        from dashboard.widgets import show_error

        show_error("The run could not be adapted:", error)
    adapted = st.session_state.pop(state.companion_key(key, "adapted"), None)
    if adapted:
        st.success(f"New adapted run {plain(adapted)}, now selected, with its predictions on this test set; the "
                   "source run is unchanged.", icon=":material/check_circle:")
    try:
        file = PredictionsFile.at(record["path"])
        frame, meta = load_predictions(file)
        from core.infer.predictions import task_of

        task = task_of(meta, run.get("task"))
        check = site_check(ws, run, test_set_id, file, task)
    except (InputError, OSError) as exc:
        st.caption(f"The site check could not be made: {plain(str(exc))}")
        return False
    if not check.flagged:
        prevalence = check.prevalence
        said = [] if prevalence is None else [
            f"estimated share of '{check.view}' {prevalence.estimated.value:.2f} "
            f"({prevalence.estimated.low:.2f}-{prevalence.estimated.high:.2f}) against {prevalence.training:.2f} in "
            "training" if prevalence.informative else
            "the model's probabilities vary too little to estimate the prevalence without labels"]
        said.append({"not run": "no dataset audit against the training data yet",
                     "not flagged": "the dataset audit finds no shift"}.get(check.audit_status, ""))
        st.caption("Site check: this test set does not look shifted for this run (" + plain("; ".join(
            s for s in said if s)) + ").")
        return False
    st.warning(plain(SHIFT_WARNING.format(reasons=check.summary())), icon=":material/warning:")
    if check.prevalence is not None:
        st.caption(f"Training prevalence from {plain(check.training_source or 'the model card')}. Rule: "
                   f"{plain(check.prevalence.rule)}. Interval: {plain(check.prevalence.estimated.method)}.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Adapt without labels now**")
        st.markdown("**Prevalence** re-estimates this site's prevalence from the model's own probabilities (EM) "
                    "and moves the threshold to match, keeping the calls. **Standardise features** maps each "
                    "backbone feature from this site's mean and spread to training's, for an export or "
                    "acquisition change at a similar prevalence. The result is a **new run**, selected once "
                    "made; this run is not changed. No label is used.")
        from core.infer.recalibrate import STANDARDISE_WARNING

        st.radio("Label-free remedy", list(ADAPT_CHOICES), key=state.companion_key(key, "adapt_method"), help=STANDARDISE_WARNING)
        st.button("Adapt without labels now", key=f"{key}_adapt", icon=":material/auto_fix_high:", type="primary",
                  on_click=_adapt, args=(ws, run["id"], test_set_id, key, run_key))
    with right:
        st.markdown("**Re-fit on N labelled images**")
        arrays = evaluation_inputs(file, task)
        point = ModelOperatingPoint.from_dict((card or {}).get("operating_point"))
        table = precision_table(point, arrays.truth, task)
        if table is not None:
            st.caption(f"How closely N labelled images pin the threshold's sensitivity ({point.sensitivity:.2f}) "
                       f"and specificity ({point.specificity:.2f}) at this test set's class mix: the 95% Wilson "
                       "half-width.")
            st.dataframe(table, hide_index=True, key=f"{key}_precision")
        if recalibrate is not None:
            recalibrate()
    return True
