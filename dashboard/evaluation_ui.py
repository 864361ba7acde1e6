"""Widgets shared by the evaluation pages: operating-point controls, interval cards and tables, case thumbnails."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import InputError
from core.metrics import BinaryScores, Interval, OperatingPoint
from core.metrics.intervals import informative_bounds
from core.store import Workspace
from core.metrics.threshold_in_use import ThresholdInUse, threshold_in_use
from dashboard import state
from dashboard.common import EvaluationSelection, remember_selection, select_evaluation, thumbnail
from dashboard.widgets import plain

RULES = {
    "threshold": "Threshold on the score",
    "sensitivity": "Target sensitivity",
    "specificity": "Target specificity",
    "youden": "Youden's J (best sensitivity + specificity)",
}
THUMBNAIL_PX = 128


def synthetic_notice(selection: EvaluationSelection) -> None:
    """Say so when the test set (or the run's training data) is synthetic."""
    test_meta = (selection.test_set or {}).get("meta") or {}
    if test_meta.get("synthetic"):
        st.info("This test set is **synthetic** (procedurally generated images, no real patient): the numbers "
                "show how the product works, not how a model would perform in a clinic.", icon=":material/science:")


def evaluation_or_stop(ws: Workspace, key: str) -> EvaluationSelection:
    """The chosen run x test set (see select_evaluation), with the synthetic-data notice; stops the page when
    there is nothing to evaluate yet (select_evaluation has said why)."""
    selection = select_evaluation(ws, key=key)
    if selection is None:
        st.stop()
    synthetic_notice(selection)
    from dashboard.import_ui import imported_notice

    imported_notice(selection)  # scores imported from a file: where they came from
    return selection


def _fmt(value: float, percent: bool) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None or math.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.1%}" if percent else f"{value:.3f}"


def interval_text(interval: Interval, percent: bool = True) -> str:
    """'91.2% (95% CI 89.0%-93.1%)', or the value with the reason it has no interval."""
    if interval.value is None or math.isnan(interval.value):
        return "n/a" + (f": {interval.reason}" if interval.reason else "")
    if not informative_bounds(interval.low, interval.high):  # none, or zero width: not shown as information
        return f"{_fmt(interval.value, percent)} (no interval: {interval.reason or 'the interval has zero width'})"
    return (f"{_fmt(interval.value, percent)} ({interval.confidence:.0%} CI {_fmt(interval.low, percent)}"
            f"-{_fmt(interval.high, percent)})")


def metric_card(container, label: str, interval: Interval | None, percent: bool = True, help: str | None = None,
                value: float | None = None) -> None:
    """A headline number with its interval written underneath (and the method in the tooltip)."""
    if interval is None:
        container.metric(label, _fmt(value, percent) if value is not None else "n/a", help=help)
        return
    method = f"{interval.confidence:.0%} interval: {interval.method}" + (f". {interval.reason}" if interval.reason
                                                                           else "")
    container.metric(label, _fmt(interval.value, percent), help=(help + "\n\n" if help else "") + method)
    if interval.value is not None and not math.isnan(interval.value) and informative_bounds(interval.low,
                                                                                             interval.high):
        container.caption(f"{interval.confidence:.0%} CI {_fmt(interval.low, percent)} to "
                          f"{_fmt(interval.high, percent)}")
    elif interval.reason or interval.value is not None and not math.isnan(interval.value):
        container.caption(interval.reason or "No interval: it has zero width.")


def with_interval_text(frame: pd.DataFrame, metrics: Sequence[str], percent: bool = True) -> pd.DataFrame:
    """A display copy where each `metric`, `metric_low`, `metric_high` triple becomes one 'value (low-high)' column."""
    out = frame.copy()
    bounds = []
    for name in metrics:
        if name not in out:
            continue
        values = out[name].to_numpy(dtype=float)
        if f"{name}_low" in out and f"{name}_high" in out:
            lows, highs = out[f"{name}_low"].to_numpy(dtype=float), out[f"{name}_high"].to_numpy(dtype=float)
        else:
            lows = highs = np.full(len(out), np.nan)
        # Plain lists, one pass: this runs on every threshold move (per-cell .iloc and a drop per metric did not).
        out[name] = [_fmt(float(value), percent) + (f" ({_fmt(float(low), percent)}-{_fmt(float(high), percent)})"
                                                    if np.isfinite(low) and np.isfinite(high) else "")
                     for value, low, high in zip(values, lows, highs)]
        bounds += [c for c in (f"{name}_low", f"{name}_high") if c in out]
    return out.drop(columns=bounds)


def operating_point_ui(scores: BinaryScores, key: str, container=None, model_point=None,
                       view_name: str | None = None, imported: bool = False) -> OperatingPoint:
    """Pick the operating point (threshold, target sensitivity/specificity or Youden); the chosen threshold
    follows the user to other pages and survives a reload (dashboard.common.remember_selection). Until the user
    chooses one, the slider opens at the model's own point (`model_point`, when set on `view_name`): the rule of
    core.metrics.threshold_in_use. A caption says where the threshold in use comes from (`imported`: scores
    imported from a file, which came with no operating point)."""
    box = container or st
    both = bool(scores.n_positive and scores.n_negative)
    rules = list(RULES) if both else ["threshold"]
    keys = state.operating_point_keys(key)
    rule = box.radio("Operating point", rules, format_func=RULES.get, key=keys.rule, horizontal=True)
    slider_key, seeded_key = keys.threshold, keys.seeded
    chosen = state.current_selection().threshold
    _open_threshold_slider(keys, threshold_in_use(model_point, chosen, view_name, imported=imported).value, chosen)
    try:
        if rule == "sensitivity":
            target = box.slider("Target sensitivity", 0.50, 1.00, 0.90, 0.01, key=keys.target_sensitivity)
            point = scores.threshold_for_sensitivity(target)
        elif rule == "specificity":
            target = box.slider("Target specificity", 0.50, 1.00, 0.90, 0.01, key=keys.target_specificity)
            point = scores.threshold_for_specificity(target)
        elif rule == "youden":
            point = scores.youden()
        else:
            threshold = box.slider("Threshold: a case is positive when its score is at least", 0.0, 1.0,
                                   step=0.001, format="%.3f", key=slider_key,
                                   help="Scores are the model's probability of the positive group of this view.")
            point = scores.at_threshold(threshold)
    except InputError as exc:
        box.warning(str(exc))
        point = scores.at_threshold(st.session_state[slider_key])
    if rule != "threshold":
        box.caption(f"Threshold chosen by {point.rule}: {point.threshold:.4f}")
    # Nobody chose a threshold yet and the slider is where it opened: the model's point (or the default) is in
    # use, not a choice of the user's, and nothing is remembered as one.
    untouched = (rule == "threshold" and chosen is None
                 and math.isclose(point.threshold, st.session_state.get(seeded_key, math.nan), abs_tol=1e-12))
    if math.isfinite(point.threshold):
        in_use = threshold_in_use(model_point, None if untouched else point.threshold, view_name, imported=imported)
        box.caption(f"Threshold in use: **{in_use.label}**",
                    help="The model's point is the threshold its own calls (its 'predicted' column) use; every "
                         "number on this page, the report and the presentation is at the threshold in use.")
    if math.isfinite(point.threshold) and not untouched and point.threshold != st.session_state.get(state.THRESHOLD):
        remember_selection(threshold=float(point.threshold))
    return point


# A user cannot move a slider by less than its step (0.001): closer than half of it to where it opened is untouched.
_UNTOUCHED_TOLERANCE = 0.0005


def _open_threshold_slider(keys: state.OperatingPointKeys, opening: float, chosen: float | None) -> None:
    """Put a threshold slider at the threshold in use (`opening`) before it is drawn: when first shown, and again
    when nobody has chosen a threshold and it still sits where it opened while the threshold in use moved (another
    run or view was picked), so its numbers never stay at another model's point."""
    session = st.session_state
    current, seeded = session.get(keys.threshold), session.get(keys.seeded)
    stale = (chosen is None and current is not None and seeded is not None
             and math.isclose(current, seeded, abs_tol=_UNTOUCHED_TOLERANCE)
             and not math.isclose(current, opening, abs_tol=_UNTOUCHED_TOLERANCE))
    if current is None or stale:
        session[keys.threshold] = session[keys.seeded] = opening


def threshold_slider(label: str, key: str, model_point=None, view_name: str | None = None, imported: bool = False,
                     container=None, help: str | None = None) -> ThresholdInUse:
    """A threshold slider on a binary view's score that follows core.metrics.threshold_in_use: it opens at the
    threshold in use (the user's when chosen, else the model's point on `view_name`, else the default) and records
    the user's threshold (dashboard.common.remember_selection, followed by every page) only once the user moves it.
    Writes "Threshold in use: model's point 0.544" under it; returns the threshold in use, whose value every number
    at the threshold takes. Widget key: state.operating_point_keys(key).threshold."""
    box = container or st
    keys = state.operating_point_keys(key)
    chosen = state.current_selection().threshold
    opening = threshold_in_use(model_point, chosen, view_name, imported=imported)
    _open_threshold_slider(keys, opening.value, chosen)
    value = float(box.slider(label, 0.0, 1.0, step=0.001, format="%.3f", key=keys.threshold, help=help))
    untouched = chosen is None and math.isclose(value, st.session_state.get(keys.seeded, math.nan),
                                                abs_tol=_UNTOUCHED_TOLERANCE)
    in_use = opening if untouched else threshold_in_use(model_point, value, view_name, imported=imported)
    if not untouched and value != chosen:
        remember_selection(threshold=value)
    box.caption(f"Threshold in use: {in_use.label}",  # our own words and number, no user text
                help="The model's point is the threshold its own calls (its 'predicted' column) use; a threshold "
                     "you move here is yours, and every page, the report and the presentation then use it.")
    return in_use


def move_operating_point(key: str, threshold: float) -> None:
    """Put the operating-point picker `key` on a threshold (a button callback, before the picker is drawn): how
    other modules move it, since only this module writes its widgets' keys."""
    keys = state.operating_point_keys(key)
    st.session_state[keys.rule] = "threshold"
    st.session_state[keys.threshold] = float(threshold)


# -- case thumbnails ----------------------------------------------------------------------------------------
def thumbnails_ui(ws: Workspace, test_set: dict | None, image_ids: Sequence[str], limit: int = 12,
                  size: int = THUMBNAIL_PX) -> None:
    """Small images of the first `limit` cases, captioned with their image id (plain text, never HTML)."""
    if not image_ids:
        return
    if not test_set or not test_set.get("source"):
        st.caption("Images are not available: the test set is not registered in this workspace.")
        return
    shown, images = [], []
    try:
        for image_id in list(image_ids)[:limit]:
            images.append(thumbnail(ws, test_set, image_id, size))
            shown.append(str(image_id))
    except (InputError, OSError) as exc:
        st.caption(f"Images are not available: {plain(exc)}")
        return
    if images:
        st.image(images, caption=shown, width=size)
    if len(image_ids) > limit:
        st.caption(f"Showing {limit} of {len(image_ids):,} cases (most confident calls first); all are in the table.")
