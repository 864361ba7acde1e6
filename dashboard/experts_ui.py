"""Experts UI plumbing: cached reader-vs-model tables, demo readers, a finished reader's results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.data.tasks import Task
from core.errors import InputError
from core.infer.predictions import imported_provenance
from core.plots.experts import interval_text, reader_roc_figure
from core.readers import (DEFAULT_PROFILES, READINGS_COLUMNS, compare_readers_to_model, is_simulated, list_readings,
                          lr_table, model_metrics, model_roc, reader_results, roc_points, simulated_profile,
                          store_simulated_readers, weighted_error_table)
from core.readers.study import Study
from core.store import Workspace
from dashboard import state
from dashboard.common import PredictionsFile, load_predictions
from dashboard.downloads import figure_downloads, table_download
from core.metrics.model_operating_point import ModelOperatingPoint
from core.metrics.penalties import Penalty
from core.metrics.threshold_in_use import threshold_in_use
from core.train.run_folder import run_model_card
from dashboard.evaluation import active_penalty
from dashboard.operating_ui import training_operating_point
from dashboard.widgets import plain, show_error

LR_METHOD_LABELS = {"log": "log (Simel)", "koopman": "Koopman score", "adjusted_log": "adjusted log (+0.5)"}
MATCH_LABELS = {None: "at a score threshold", "specificity": "matched to each reader's specificity",
                "sensitivity": "matched to each reader's sensitivity"}
def model_point_of(run: dict | None) -> ModelOperatingPoint | None:
    """The run's (its registry row's) own operating point from its model card (None: no model, none stored, or an
    unreadable card; the threshold in use then falls back as core.metrics.threshold_in_use says)."""
    try:
        return training_operating_point(run_model_card(run))
    except InputError:
        return None


def penalty_in_use(ws: Workspace, task: Task) -> Penalty:
    """The penalties page's matrix for this task (session, then workspace, then the task default)."""
    return active_penalty(ws, task)


def demo_test_set_id(ws: Workspace) -> str | None:
    return (ws.get_setting("demo_ids", {}) or {}).get("test_set_id")


def ensure_demo_readers(ws: Workspace, test_set_id: str, truth, task: Task) -> bool:
    """On the built-in demo's test set with no readings yet, store the simulated readers (labelled SIMULATED)
    so the page is alive on first launch. Returns whether it created them."""
    if test_set_id != demo_test_set_id(ws) or task.kind == "multilabel" or task.default_view() is None:
        return False
    if not list_readings(ws, test_set_id).empty:
        return False
    store_simulated_readers(ws, test_set_id, truth, task)
    return True


def simulated_notice(reader_ids) -> None:
    """Say plainly which readers are simulated and what they were made to be."""
    simulated = sorted({str(r) for r in reader_ids if is_simulated(r)})
    if not simulated:
        return
    lines = []
    for reader in simulated:
        profile = simulated_profile(reader, DEFAULT_PROFILES)
        lines.append(f"- **{plain(reader)}**: " + (
            f"{profile.description} Made to reach sensitivity {profile.sensitivity:.2f} and specificity "
            f"{profile.specificity:.2f} in expectation." if profile else "a simulated reader."))
    st.info("**SIMULATED readers** - made-up readers for the built-in demo, not real people. Their answers "
            "were drawn at random to match stated profiles:\n" + "\n".join(lines), icon=":material/science:")


# One cache per table, each keyed only on what it depends on: moving the threshold does not redraw the ROC
# curve, and changing the penalty matrix recomputes only what holds weighted errors.
@st.cache_data(show_spinner="Computing the model's ROC curve...", max_entries=16)
def _roc(file: PredictionsFile, task: Task, view: str) -> dict:
    return model_roc(load_predictions(file)[0], task, view)


@st.cache_data(show_spinner=False, max_entries=64)
def _model_point(file: PredictionsFile, task: Task, view: str, threshold: float, penalty: np.ndarray,
                 lr_ci: str) -> dict:
    return model_metrics(load_predictions(file)[0], task, view, threshold, penalty=penalty, lr_ci=lr_ci)


@st.cache_data(show_spinner="Comparing each reader with the model on the same images...", max_entries=32)
def _compare(file: PredictionsFile, readings: pd.DataFrame, task: Task, view: str, threshold: float,
             match: str | None, penalty: np.ndarray, lr_ci: str) -> pd.DataFrame:
    return compare_readers_to_model(readings, load_predictions(file)[0], task, view, threshold=threshold,
                                    match=match, penalty=penalty, lr_ci=lr_ci)


@st.cache_data(show_spinner="Computing likelihood ratios...", max_entries=32)
def _lr(file: PredictionsFile, readings: pd.DataFrame, task: Task, view: str, threshold: float,
        lr_ci: str) -> pd.DataFrame:
    return lr_table(readings, load_predictions(file)[0], task, view, threshold, lr_ci=lr_ci)


@st.cache_data(show_spinner="Computing weighted errors...", max_entries=16)
def _weighted(file: PredictionsFile, readings: pd.DataFrame, task: Task, penalty: np.ndarray) -> pd.DataFrame:
    return weighted_error_table(readings, load_predictions(file)[0], task, penalty=penalty)


def comparison(file: PredictionsFile, readings: pd.DataFrame, task: Task, view: str, threshold: float,
               match: str | None, penalty: np.ndarray, lr_ci: str) -> dict:
    """Everything the experts page draws, computed by core.readers and cached per set of choices:
    compare (one row per reader), points (ROC crosshairs), roc, model (operating point), lr, weighted."""
    readings = readings[READINGS_COLUMNS].reset_index(drop=True)
    threshold, penalty = float(threshold), np.asarray(penalty, dtype=float)
    compare = _compare(file, readings, task, view, threshold, match, penalty, lr_ci)
    return {"compare": compare, "points": roc_points(compare), "roc": _roc(file, task, view),
            "model": _model_point(file, task, view, threshold, penalty, lr_ci),
            "lr": _lr(file, readings, task, view, threshold, lr_ci),
            "weighted": _weighted(file, readings, task, penalty)}


def summary_table(compare: pd.DataFrame, model: dict) -> pd.DataFrame:
    """One row per reader and one for the model: each statistic with its interval, as text for reading."""
    rows = [{"who": "model (all cases)", "kind": "model", "operating point": model.get("rule", ""),
             "images": model["n_graded"]} | _interval_columns(model)]
    for row in compare.to_dict("records"):
        rows.append({"who": row["reader_id"], "kind": row["kind"], "operating point": "reader's own calls",
                     "images": row["n_graded"]}
                    | _interval_columns(row) | {"kappa vs model": interval_text(row.get("kappa"), row.get(
                        "kappa_low"), row.get("kappa_high"))})
    return pd.DataFrame(rows)


def _interval_columns(row: dict) -> dict:
    return {"sensitivity": interval_text(row["sensitivity"], row["sensitivity_low"], row["sensitivity_high"]),
            "specificity": interval_text(row["specificity"], row["specificity_low"], row["specificity_high"]),
            "LR+": interval_text(row["lr_positive"], row["lr_positive_low"], row["lr_positive_high"]),
            "LR-": interval_text(row["lr_negative"], row["lr_negative_low"], row["lr_negative_high"]),
            "accuracy": interval_text(row["accuracy"], row["accuracy_low"], row["accuracy_high"]),
            "weighted error": f"{row['weighted_error']:.3f}"}


def paired_table(compare: pd.DataFrame) -> pd.DataFrame:
    """Each reader against the model on the same cases: McNemar and the paired differences (model - reader)."""
    rows = []
    for row in compare.to_dict("records"):
        if row.get("problem"):
            rows.append({"reader": row["reader_id"], "problem": row["problem"]})
            continue
        rows.append({
            "reader": row["reader_id"], "shared images": row["n_shared"], "model rule": row["model_rule"],
            "reader sensitivity": row["reader_sensitivity"], "model sensitivity": row["model_sensitivity"],
            "sensitivity difference (model - reader)": interval_text(
                row["sensitivity_difference"], row["sensitivity_difference_low"], row["sensitivity_difference_high"]),
            "reader specificity": row["reader_specificity"], "model specificity": row["model_specificity"],
            "specificity difference (model - reader)": interval_text(
                row["specificity_difference"], row["specificity_difference_low"], row["specificity_difference_high"]),
            "only reader right": row["reader_only_correct"], "only model right": row["model_only_correct"],
            "McNemar exact p": row["mcnemar_exact_p"], "McNemar mid-p": row["mcnemar_mid_p"],
            "kappa": interval_text(row["kappa"], row["kappa_low"], row["kappa_high"]), "problem": ""})
    return pd.DataFrame(rows)


def matched_sentences(compare: pd.DataFrame, match: str | None) -> list[str]:
    """'At SIMULATED-x's specificity (0.83), the model's sensitivity is 0.67 (the reader's: 1.00).'"""
    if match is None:
        return []
    other = "sensitivity" if match == "specificity" else "specificity"
    out = []
    for row in compare.to_dict("records"):
        if row.get("problem"):
            continue
        difference = interval_text(row[f"{other}_difference"], row[f"{other}_difference_low"],
                                   row[f"{other}_difference_high"])
        out.append(f"At {plain(row['reader_id'])}'s {match} ({row[f'reader_{match}']:.2f}), the model's {other} "
                   f"is {row[f'model_{other}']:.2f} (the reader's: {row[f'reader_{other}']:.2f}; model minus "
                   f"reader {difference}).")
    return out


# -- readers against the model per subgroup ------------------------------------------------------------------
@st.cache_data(show_spinner="Comparing each reader with the model in each subgroup...", max_entries=16)
def _reader_subgroups(file: PredictionsFile, readings: pd.DataFrame, task: Task, view: str, threshold: float,
                      column: str, values: list, penalty: np.ndarray) -> pd.DataFrame:
    from core.report.subgroups import reader_subgroup_table

    return reader_subgroup_table(readings, load_predictions(file)[0], task, np.asarray(values, dtype=object),
                                 view=view, threshold=threshold, penalty=penalty)


def reader_subgroup_sentences(table: pd.DataFrame) -> list[str]:
    """Per subgroup where some reader is clearly higher than the model (interval of model minus reader below 0):
    which readers, on which statistic; one sentence when there is no such subgroup."""
    out = []
    for value, rows in table.groupby("subgroup", sort=False):
        parts = []
        for name in ("sensitivity", "specificity"):
            column = f"{name}: who is higher"
            if column not in rows:
                continue
            higher = rows.loc[rows[column] == "reader higher", "reader"].astype(str).tolist()
            if higher:
                parts.append(f"{name} ({len(higher)} of {len(rows)} readers: {', '.join(plain(r) for r in higher)})")
        if parts:
            out.append(f"In subgroup {plain(value)}, readers are clearly higher than the model on " + "; ".join(parts)
                       + ".")
    return out or ["In no subgroup is a reader clearly higher than the model on sensitivity or specificity."]


def reader_subgroups_section(ws: Workspace, selection, readings: pd.DataFrame, view: str, threshold: float,
                             penalty: np.ndarray) -> None:
    """Is the model better than the readers in every group? A column of the test set (its own, or an image
    property), then per subgroup each reader's and the model's sensitivity and specificity on the cases the reader
    graded there, the paired differences and which side each favours (core.report.subgroups)."""
    from core.report.subgroups import READER_SUBGROUP_NOTE, available_subgroup_columns
    from dashboard.evaluation_ui import with_interval_text
    from dashboard.performance_sections import subgroup_column_values

    from dashboard.subgroups_ui import subgroup_dataset

    record = selection.test_set
    ds = subgroup_dataset(ws, record)
    if ds is None:
        return
    if not ds.subgroup_columns():
        st.caption("This test set has no columns of its own beyond image, label, patient and split (a manifest's "
                   "extra columns such as sex, age, site or device, or DICOM headers, become subgroups); the image "
                   "properties are read from the images.")
    column = st.selectbox("Split the test set by", available_subgroup_columns(ds), key="experts_subgroup_column",
                          help="A column of the test set, or an image property from the audit's scan (numbers with "
                               "many values are cut into quartiles).")
    try:
        values = subgroup_column_values(str(ws.root), str(record["id"]), str(record.get("fingerprint")),
                                        selection.file, column)
        table = _reader_subgroups(selection.file, readings[READINGS_COLUMNS].reset_index(drop=True), selection.task,
                                  view, float(threshold), column, values, np.asarray(penalty, dtype=float))
    except InputError as exc:
        show_error("The readers cannot be compared with the model per subgroup:", exc)
        return
    for sentence in reader_subgroup_sentences(table):
        st.markdown(f"- {sentence}")
    rates = [f"{who} {name}" for name in ("sensitivity", "specificity") for who in ("reader", "model")]
    shown = with_interval_text(table, rates + ["sensitivity difference", "specificity difference"])
    st.dataframe(shown, hide_index=True, width="stretch", key="experts_subgroup_table")
    table_download(table, f"readers-by-{column}-{selection.dataset_id}", key="experts_subgroup_csv")
    st.caption(f"By {plain(column)}: {READER_SUBGROUP_NOTE}. Intervals of sensitivity and specificity: Wilson.")


# -- a finished reader's own results (reader study page) ----------------------------------------------------
def _predictions_for(ws: Workspace, test_set_id: str) -> list[dict]:
    return [r for r in ws.list_predictions() if r["dataset_id"] == test_set_id]


def reader_results_view(ws: Workspace, study: Study, reader_id: str, key: str = "rs_results") -> None:
    """What a reader sees after finishing (or ending early): their confusion matrix, sensitivity and
    specificity with intervals, their point on the model's ROC, LRs and weighted error next to the model's,
    and agreement with the model. Only called once core says the reader is done."""
    task = study.task
    runs = {r["id"]: r for r in ws.list_runs(include_archived=True)}
    models = _predictions_for(ws, study.test_set_id)
    cols = st.columns(2)
    views = [v.name for v in task.binary_views]
    view = cols[0].selectbox("Binary view", views, key=f"{key}_view") if views else None
    # The run selected elsewhere (the selection that follows the user), not the first row of the list.
    selected_run = state.current_selection().run_id
    default = next((i for i, r in enumerate(models) if r["run_id"] == selected_run), 0)
    chosen = cols[1].selectbox("Compare with model", models, key=f"{key}_model", index=default,
                               format_func=lambda r: runs.get(r["run_id"], {}).get("name", r["run_id"])) \
        if models else None
    frame, meta = load_predictions(chosen["path"]) if chosen else (None, None)
    penalty = penalty_in_use(ws, task)
    # The threshold in use (core.metrics.threshold_in_use): the user's when chosen, else the model's own point.
    in_use = threshold_in_use(model_point_of(runs.get(chosen["run_id"])) if chosen else None,
                              state.current_selection().threshold, view,
                              imported=imported_provenance(meta) is not None)
    threshold = in_use.value
    try:
        report = reader_results(ws, study.id, reader_id, predictions=frame, view=view, threshold=threshold,
                                penalty=penalty)
    except InputError as exc:
        show_error("Your results could not be computed.", exc)
        return
    metrics, model, paired = report["metrics"], report["model"], report["paired"]
    if report.get("problem"):
        st.warning(plain(report["problem"]))
    if chosen is None:
        st.info("No model has been run on this test set yet: your results are against the truth only.")
    st.markdown("**Your confusion matrix** (rows: true class, columns: your call)")
    confusion = report["confusion"]
    # Plain string axes: the categorical axes core returns do not survive the trip to the browser's table.
    st.dataframe(pd.DataFrame(confusion.to_numpy(), index=pd.Index([str(c) for c in confusion.index], name="true"),
                              columns=[f"called {c}" for c in confusion.columns]), width="content",
                 key=f"{key}_confusion")
    if not metrics:
        return
    top = st.columns(4)
    top[0].metric("Your sensitivity", interval_text(metrics["sensitivity"], metrics["sensitivity_low"],
                                                    metrics["sensitivity_high"]), help=report["view"])
    top[1].metric("Your specificity", interval_text(metrics["specificity"], metrics["specificity_low"],
                                                    metrics["specificity_high"]), help=report["view"])
    top[2].metric("Your weighted error", f"{metrics['weighted_error']:.3f}",
                  help=f"Mean penalty per image, penalty matrix: {penalty.name}")
    if paired:
        top[3].metric("Agreement with the model (kappa)",
                      interval_text(paired["kappa"], paired["kappa_low"], paired["kappa_high"]))
    table = pd.DataFrame([{"": "you", "images": metrics["n_graded"]} | _interval_columns(metrics)]
                         + ([{"": f"model ({model['rule']}), same images", "images": model["n_graded"]}
                             | _interval_columns(model)] if model else []))
    st.markdown(f"**You and the model, {plain(report['view'])}** (95% intervals; the model at its threshold in use: "
                f"{in_use.label})")
    st.dataframe(table, hide_index=True, width="stretch")
    if paired:
        st.caption(f"McNemar on correctness in the binary view: exact p = {paired['mcnemar_exact_p']:.3g}, "
                   f"mid-p = {paired['mcnemar_mid_p']:.3g} (images only you got right: "
                   f"{paired['reader_only_correct']}; only the model: {paired['model_only_correct']}).")
    if report.get("roc") is not None:
        fig = reader_roc_figure(report["roc"], roc_points(pd.DataFrame([metrics])), model)
        st.plotly_chart(fig, key=f"{key}_roc")
        st.caption("The curve is the model on the whole test set; the cross is the model at its threshold on the "
                   "images you graded; your crosshairs are 95% Wilson intervals.")
        figure_downloads(fig, "reader-roc", key=f"{key}_roc_dl")
    table_download(pd.DataFrame([{"reader_id": reader_id, **metrics}] + ([model] if model else [])),
                   f"reader-results-{reader_id}", key=f"{key}_csv", label="Your results (CSV)")
