"""Penalties: edit the task's penalty matrix and see the weighted error, the penalty-minimising rule and its cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import InputError
from core.metrics import ConfusionMatrix
from core.metrics.penalty_effect import check_penalty_entries, penalty_table
from core.plots import confusion_figure, count_change_figure, metric_bars_figure
from dashboard import state
from dashboard.common import get_workspace
from dashboard.downloads import figure_downloads, table_download
from core.metrics.penalties import check_referral_cost
from core.report.referral_cost import DEFAULT_REFERRAL_NOTE, clear_referral_cost, save_referral_cost
from dashboard.access_ui import signed_in_here
from dashboard.evaluation import (active_penalty, cached_penalty_effect, evaluation_inputs, headline_weighted_error,
                                  penalty_presets, referral_cost, set_active_penalty, stored_reader_confusions)
from dashboard.evaluation_figures import argmax_confusion_figure
from dashboard.evaluation_ui import evaluation_or_stop, interval_text, metric_card, with_interval_text
from dashboard.widgets import plain, show_error

st.title("Penalties")
st.caption("Not every mistake costs the same: calling a CNV scan normal delays urgent treatment, calling a normal "
           "scan CNV costs a referral. Set what each mistake costs (rows = true class, columns = the call); the "
           "weighted error is the mean penalty per image (Kermany et al. 2018).")

ws = get_workspace()
selection = evaluation_or_stop(ws, key="pen")
task = selection.task
if task.kind == "multilabel":
    st.info("Penalty matrices apply to single-label tasks (one call per image); this task is multi-label.")
    st.stop()
try:
    arrays = evaluation_inputs(selection.file, task)
except InputError as exc:
    show_error("These predictions cannot be evaluated:", exc)
    st.stop()
classes = list(task.classes)


@st.fragment
def penalties_in_use() -> None:
    """The matrix editor and everything it moves (the weighted errors, the rule's calls, the readers' costs): a cell
    edit reruns this alone, not the page around it (sign-in, the run and test-set pickers, the predictions), so the
    sign-in is checked again first. What no penalty moves (the argmax confusion figure, the readers' confusions) is
    cached per predictions file (and readings version); the effect of a matrix is cached per matrix."""
    signed_in_here()
    active = active_penalty(ws, task)  # a checked core.metrics.penalties.Penalty

    # The editor starts from a stable base per "version"; loading a preset starts a new version (fresh editor).
    version_key = state.penalty_version_key(task.name)
    version = st.session_state.setdefault(version_key, 0)
    keys = state.penalty_editor_keys(task.name, version)
    base_key, editor_key = keys.base, keys.editor
    # A fresh editor (first visit, or back from another page: widget state is gone) starts from the matrix in use.
    if editor_key not in st.session_state or base_key not in st.session_state:
        st.session_state[base_key] = (active.name, [list(row) for row in active.rows])
    base_name, base_rows = st.session_state[base_key]

    st.subheader("Penalty matrix")
    if st.session_state.get(state.PENALTY_FLASH):
        st.success(st.session_state.pop(state.PENALTY_FLASH), icon=":material/check:")
    presets = penalty_presets(ws, task)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    preset = left.selectbox("Start from", list(presets), key=f"pen_preset_{task.name}")
    if right.button("Load", key="pen_load", icon=":material/restart_alt:"):
        set_active_penalty(ws, task, preset, presets[preset])
        st.session_state[version_key] = version + 1
        st.rerun()

    base = pd.DataFrame(base_rows, index=pd.Index(classes, name="true class"), columns=classes)
    edited = st.data_editor(base, key=editor_key, width="stretch",
                            column_config={c: st.column_config.NumberColumn(f"called {c}", format="%.2f", step=0.25)
                                           for c in classes})
    try:
        check = check_penalty_entries(edited, classes)
    except InputError as exc:
        st.error(f"{plain(exc)}. The last valid matrix stays in use.", icon=":material/error:")
    else:
        for warning in check.warnings:
            st.warning(plain(warning), icon=":material/warning:")
        if not np.array_equal(check.matrix, active.matrix):
            name = base_name if np.array_equal(check.matrix, np.asarray(base_rows)) else f"{base_name} (edited)"
            active = set_active_penalty(ws, task, name, check.matrix)
    matrix = active  # the Penalty in use, passed on as it is
    st.caption(f"In use: **{plain(active.name)}**. It follows you to the Performance and Experts pages and is kept in "
               "the workspace.")
    table_download(pd.DataFrame(active.matrix, index=pd.Index(classes, name="true class"),
                                columns=classes).reset_index(),
                   "penalty-matrix", key="pen_matrix_csv")

    st.markdown("**Referral to a reader** (a third outcome: a model with a referral band leaves unsure cases to a "
                "reader; the cost of that second look, per true class)")
    cost_in_use, cost_note = referral_cost(ws, task, matrix)
    cost_key, cost_base_key = keys.referral, keys.referral_base
    # The editor shows the cost in use until the user edits a cell (a default cost follows the matrix as it changes).
    if not ((st.session_state.get(cost_key) or {}).get("edited_rows")) or cost_base_key not in st.session_state:
        st.session_state[cost_base_key] = [float(v) for v in cost_in_use]
    cost_table = st.data_editor(pd.DataFrame([st.session_state[cost_base_key]], columns=classes,
                                             index=pd.Index(["referral cost"], name="true class")),
                                key=cost_key, width="stretch",
                                column_config={c: st.column_config.NumberColumn(f"true {c}", format="%.2f", step=0.05,
                                                                                min_value=0.0) for c in classes})
    cost_left, cost_right = st.columns([3, 1], vertical_alignment="bottom")
    try:
        edited_cost = check_referral_cost(cost_table.to_numpy(dtype=float), len(classes))
    except (InputError, ValueError) as exc:
        cost_left.error(f"Referral cost: {plain(exc)}. The last valid cost stays in use.", icon=":material/error:")
    else:
        if not np.array_equal(edited_cost, np.asarray(st.session_state[cost_base_key], dtype=float)):
            save_referral_cost(ws, task, edited_cost)
            cost_in_use, cost_note = edited_cost, "set on the Penalties page"
    cost_left.caption(f"In use: {plain(', '.join(f'{c} {v:g}' for c, v in zip(classes, cost_in_use)))} "
                      f"({plain(cost_note)}). The Performance page and the report price each referral with it.")
    if cost_right.button("Default", key="pen_referral_default", icon=":material/restart_alt:",
                         help=DEFAULT_REFERRAL_NOTE):
        clear_referral_cost(ws, task)
        st.session_state.pop(cost_base_key, None)
        st.session_state.pop(cost_key, None)
        st.rerun()

    with st.expander("Save or delete matrices"):
        cols = st.columns([3, 1], vertical_alignment="bottom")
        save_name = cols[0].text_input("Save the matrix in use as", key="pen_save_name", max_chars=60)
        if cols[1].button("Save", key="pen_save", icon=":material/save:"):
            if not save_name.strip():
                st.error("Give the matrix a name before saving.")
            else:
                ws.save_penalty(save_name.strip(), task.name, [list(row) for row in active.rows])
                set_active_penalty(ws, task, save_name.strip(), matrix)
                st.session_state[state.PENALTY_FLASH] = f"Saved as {plain(save_name.strip())}: it is now a preset."
                st.rerun()  # so the presets list above shows it
        saved = list(ws.list_penalties(task.name))
        if saved:
            cols = st.columns([3, 1], vertical_alignment="bottom")
            doomed = cols[0].selectbox("Saved matrix", saved, key="pen_delete_name")
            if cols[1].button("Delete", key="pen_delete", icon=":material/delete:"):
                ws.delete_penalty(doomed, task.name)
                st.session_state[state.PENALTY_FLASH] = f"Deleted {plain(doomed)}."
                st.rerun()

    effect = cached_penalty_effect(selection.file, task, matrix)
    comparison = effect.comparison
    st.subheader("Effect on the model")
    cards = st.columns(4)
    # Short labels: a quarter-width card cut the longer ones to "Weighted error, most probable c...".
    metric_card(cards[0], "Weighted error (argmax)", effect.argmax_weighted_error, percent=False,
                help="Mean penalty per image when the model calls its most probable class (argmax).")
    metric_card(cards[1], "Weighted error (penalty rule)", effect.min_penalty_weighted_error, percent=False,
                help="Mean penalty per image with the calls that minimise the expected penalty given the model's "
                     "probabilities (the penalty-minimising rule, a Bayes decision).")
    cards[2].metric(f"Cost per {effect.per_patients:,} images", f"{effect.argmax_cost:,.0f}",
                    delta=(f"{-effect.cost_saved:,.0f} with the penalty-minimising rule" if round(effect.cost_saved)
                           else None), delta_color="inverse",
                    help="Total penalty expected per 1,000 images read, argmax calls (the weighted error is a mean "
                         "per image).")
    cards[3].metric("Calls changed by the rule", f"{comparison.changed_calls:,}",
                    help=f"Of {arrays.n:,} images, calls that differ between argmax and the penalty-minimising rule.")
    # The model's own calls (its `predicted` column, at its operating point): the weighted error Performance, the
    # presentation and the report show when no other threshold is chosen.
    metric_card(st.columns(4)[0], "Weighted error (the model's calls)",
                headline_weighted_error(selection.file, task, arrays.model_calls, matrix), percent=False,
                help="Mean penalty per image with the model's own calls, at its operating point: the number "
                     "Performance "
                     "and the report show at the model's point.")

    # Two matrices a row: in thirds of the page the cells were too narrow for their text ("100%" clipped).
    top_left, top_right = st.columns(2)
    bottom_left, bottom_right = st.columns(2)
    figures = [
        (top_left, argmax_confusion_figure(selection.file, task), "confusion-argmax"),
        (top_right, confusion_figure(ConfusionMatrix(tuple(classes), comparison.min_penalty_confusion), clickable=False,
                                     title="Penalty-minimising rule"), "confusion-min-penalty"),
        (bottom_left, count_change_figure(effect.count_change, classes, title="Change (rule - argmax)"),
         "confusion-change"),
    ]
    for column, fig, name in figures:
        with column:
            st.plotly_chart(fig, key=f"pen_{name}")
            figure_downloads(fig, name, key=f"pen_{name}_dl")
    bottom_right.caption("Cells show images and the share of the true class (row). The change matrix counts the images "
                         "that move into (+) or out of (-) each cell when the penalty-minimising rule replaces argmax.")
    counts = pd.concat({"most probable class": pd.DataFrame(comparison.argmax_confusion, index=classes,
                                                            columns=classes),
                        "penalty-minimising rule": pd.DataFrame(comparison.min_penalty_confusion, index=classes,
                                                                columns=classes)}, names=["rule", "true class"])
    table_download(counts.reset_index(), "confusion-argmax-vs-min-penalty", key="pen_confusion_csv")

    st.subheader("Model and experts")
    readers = {}
    if selection.dataset_id:
        try:
            readers = stored_reader_confusions(ws, selection.file, task, selection.dataset_id)
        except InputError as exc:
            st.warning(f"The readings of this test set cannot be compared: {plain(exc)}")
    table = penalty_table(effect, readers)
    if not readers:
        st.caption("No expert readings for this test set yet (import them or run a reader study on the Experts pages); "
                   "their weighted errors will appear here.")
    elif table["name"].str.startswith("SIMULATED").any():
        st.caption("Readers named SIMULATED-... are simulated for the demo, not real experts.")
    fig = metric_bars_figure(table, "weighted_error", "Weighted error (mean penalty per image)",
                             title="Weighted error with this matrix")
    st.plotly_chart(fig, key="pen_bars")
    figure_downloads(fig, "weighted-error", key="pen_bars_dl")
    st.dataframe(with_interval_text(table, ["weighted_error"], percent=False), hide_index=True, key="pen_table",
                 column_config={"model_same_images": st.column_config.NumberColumn(
                     "model on the reader's images", format="%.3f"),
                     f"cost_per_{effect.per_patients}": st.column_config.NumberColumn(
                         f"cost per {effect.per_patients:,} images", format="%.0f")})
    table_download(table, "weighted-error-model-and-experts", key="pen_table_csv")
    st.caption(f"Intervals: {plain(effect.argmax_weighted_error.method)}; "
               f"argmax {interval_text(effect.argmax_weighted_error, percent=False)}.")


penalties_in_use()
