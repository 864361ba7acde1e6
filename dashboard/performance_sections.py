"""The Performance page's sections (ROC, PR, confusion, per class, tiers, imbalance, calibration, refer when unsure),
one function each. Sections taking an `EvaluationBase` draw what does not move with the threshold (the page draws them
once per full rerun, from cached figures); those taking an `Evaluation` draw what the operating point changes (the
page's fragment reruns them alone when the threshold moves)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.data.tasks import BinaryView, Task
from core.errors import InputError
from core.metrics import (BinaryScores, DiagnosticMetrics, OperatingPoint, binary_view_data, brier_score,
                          predictive_values_at_prevalence, tier_confusion)
from core.metrics.dashboard import (CallSummary, EvaluationArrays, cases_in_cell,
                                    class_balance_effect, class_table, label_counts,
                                    largest_error_cell, predictive_value_curve)
from core.plots import (COLOUR_MODES, PointMarker, confusion_figure, predictive_values_figure, with_markers)
from core.store import Workspace
from dashboard import state
from dashboard.downloads import figure_downloads, table_download
from core.train.run_folder import recorded_balance, run_config
from dashboard.common import EvaluationSelection, PredictionsFile
from core.plots.confusion import REFERRED_LABEL
from dashboard.evaluation import active_penalty, cached_reliability, headline_weighted_error, training_class_counts
from dashboard.evaluation_figures import (class_distribution_view, class_figures, reliability_view_figure,
                                          view_curve_figure)
from dashboard.evaluation_ui import interval_text, metric_card, thumbnails_ui, with_interval_text
from dashboard.widgets import plain, show_error

# Prevalences for the PPV/NPV curve: screening populations (0.1%) up to referral clinics (99%).
PREVALENCE_GRID = np.unique(np.concatenate([np.logspace(-3, np.log10(0.99), 80), [0.5]]))
RATE_COLUMNS = ("sensitivity", "specificity", "ppv", "npv")


@dataclass(frozen=True)
class EvaluationBase:
    """What the sections read for one run x test set and binary view, whatever the operating point."""

    ws: Workspace
    selection: EvaluationSelection
    task: Task
    file: PredictionsFile
    arrays: EvaluationArrays
    view: BinaryView
    scores: BinaryScores


@dataclass(frozen=True)
class Evaluation(EvaluationBase):
    """Everything the sections read for one run x test set at the current operating point."""

    point: OperatingPoint
    rates: DiagnosticMetrics
    calls: np.ndarray
    calls_rule: str
    summary: CallSummary
    penalty_name: str


def _view_curve_section(ev: Evaluation, kind: str, marker: Callable[[], PointMarker], stem: str, empty: str) -> None:
    """The view's curve (kind "roc" or "pr") with the operating point: the cached curve with the marker added."""
    base = view_curve_figure(ev.file, ev.task, ev.view, kind)
    if base is None:
        st.info(empty)
        return
    fig = with_markers(base, [marker()])
    st.plotly_chart(fig, key=f"perf_{kind}_view")
    figure_downloads(fig, f"{stem}-{ev.view.name}", key=f"perf_{kind}_view_dl")


def _classes_curve_section(base: EvaluationBase, kind: str, stem: str) -> None:
    """One-vs-rest curves per class (kind "roc" or "pr"): threshold-free, built once per predictions file."""
    class_roc, class_pr = class_figures(base.file, base.task)
    fig = class_roc if kind == "roc" else class_pr
    st.plotly_chart(fig, key=f"perf_{kind}_classes")
    figure_downloads(fig, f"{stem}-one-vs-rest", key=f"perf_{kind}_classes_dl")


def roc_view_section(ev: Evaluation) -> None:
    _view_curve_section(ev, "roc", lambda: PointMarker.on_roc("operating point", ev.point), "roc",
                        "This view has no positive or no negative cases: no ROC curve.")


def pr_view_section(ev: Evaluation) -> None:
    _view_curve_section(ev, "pr", lambda: PointMarker.on_pr("operating point", ev.rates), "precision-recall",
                        "Precision-recall curves need both positive and negative cases.")


def roc_classes_section(base: EvaluationBase) -> None:
    _classes_curve_section(base, "roc", "roc")


def pr_classes_section(base: EvaluationBase) -> None:
    _classes_curve_section(base, "pr", "precision-recall")


ROC_NOTE = ("Curves are drawn from at most 2,000 points each for speed; every AUC and rate uses all cases. "
            "AUC intervals: DeLong.")


def _selected_cell(chart_key: str, k: int) -> tuple[int, int] | None:
    """The cell the user clicked on the heatmap, from the chart's selection state (None if none)."""
    state = st.session_state.get(chart_key)
    points = (state or {}).get("selection", {}).get("points", []) if state else []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) >= 2:
            return int(data[0]), int(data[1])
        if point.get("curve_number") == 1 and point.get("point_index") is not None:
            return divmod(int(point["point_index"]), k)
    return None


def confusion_section(ev: Evaluation) -> None:
    classes = list(ev.task.classes)
    k = len(classes)
    mode = st.segmented_control("Colour", list(COLOUR_MODES), default="row", key="perf_confusion_colour",
                                format_func=lambda m: COLOUR_MODES[m]) or "row"
    chart_key = "perf_confusion_chart"
    clicked = _selected_cell(chart_key, k)
    if clicked is not None and clicked != st.session_state.get(state.CELL_APPLIED):
        st.session_state[state.CELL_APPLIED] = clicked
        st.session_state[state.CELL_TRUE], st.session_state[state.CELL_CALLED] = classes[clicked[0]], \
            classes[clicked[1]]
    if st.session_state.get(state.CELL_TRUE) not in classes or st.session_state.get(state.CELL_CALLED) not in classes:
        i, j = largest_error_cell(ev.summary.confusion)
        st.session_state[state.CELL_TRUE], st.session_state[state.CELL_CALLED] = classes[i], classes[j]
    cell = (classes.index(st.session_state[state.CELL_TRUE]), classes.index(st.session_state[state.CELL_CALLED]))
    fig = confusion_figure(ev.summary.confusion, colour_by=mode, selected=cell,
                           title=f"Confusion matrix ({ev.calls_rule})")
    st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode="points")
    figure_downloads(fig, "confusion-matrix", key="perf_confusion_dl")
    counts = pd.DataFrame(ev.summary.confusion.counts, index=pd.Index(classes, name="true class"), columns=classes)
    table_download(counts.reset_index(), "confusion-matrix", key="perf_confusion_csv")
    st.markdown("**Cases in a cell** (click a cell, or choose it here)")
    left, right = st.columns(2)
    left.selectbox("True class", classes, key="perf_cell_true")
    right.selectbox("Called class", classes, key="perf_cell_called")
    i, j = classes.index(st.session_state[state.CELL_TRUE]), classes.index(st.session_state[state.CELL_CALLED])
    cases = cases_in_cell(ev.arrays, ev.calls, i, j)
    st.caption(f"{len(cases):,} {'image is' if len(cases) == 1 else 'images are'} {plain(classes[i])} and "
               f"{'was' if len(cases) == 1 else 'were'} called {plain(classes[j])}.")
    # The explain page reads this to open the same cases.
    st.session_state[state.CONFUSION_CELL] = {"run_id": ev.selection.run_id,
                                          "test_set_id": ev.selection.dataset_id, "true": classes[i],
                                          "called": classes[j], "image_ids": cases["image_id"].head(200).tolist()}
    if len(cases):
        shown = cases.drop(columns=["row"])
        st.dataframe(shown, hide_index=True, height=240, key="perf_cell_cases",
                     column_config={"p_true_class": st.column_config.NumberColumn("P(true class)", format="%.3f"),
                                    "p_called_class": st.column_config.NumberColumn("P(called class)",
                                                                                    format="%.3f")})
        table_download(shown, f"cases-{classes[i]}-called-{classes[j]}", key="perf_cell_csv")
        thumbnails_ui(ev.ws, ev.selection.test_set, cases["image_id"].tolist())


def class_section(ev: Evaluation, aucs) -> None:
    table = class_table(ev.summary.confusion, aucs)
    shown = with_interval_text(with_interval_text(table, RATE_COLUMNS), ["auc"], percent=False)
    st.dataframe(shown, hide_index=True, key="perf_class_table",
                 column_config={"ppv": "PPV", "npv": "NPV", "auc": "AUC (one-vs-rest)"})
    st.caption(f"Each class against all others, {plain(ev.calls_rule)}. Rates: Wilson 95% intervals; AUC: DeLong. "
               "Support = images of that class; called = images the model called that class.")
    table_download(table, "per-class-metrics", key="perf_class_csv")


def tiers_section(ev: Evaluation) -> None:
    if not ev.task.referral_levels:
        st.info("This task defines no referral levels (urgent / routine / observation).")
        return
    tiers = tier_confusion(ev.arrays.truth, ev.calls, ev.task)
    fig = confusion_figure(tiers, title="Referral tiers", x_title="Tier of the call", y_title="True tier",
                           clickable=False)
    st.plotly_chart(fig, key="perf_tiers")
    figure_downloads(fig, "referral-tiers", key="perf_tiers_dl")
    levels = pd.DataFrame({"class": list(ev.task.referral_levels), "referral level":
                           list(ev.task.referral_levels.values())})
    st.dataframe(levels, hide_index=True, key="perf_tier_levels")
    table_download(levels, "referral-levels", key="perf_tier_levels_csv")
    table = pd.DataFrame(tiers.counts, index=pd.Index(tiers.classes, name="true tier"), columns=tiers.classes)
    table_download(table.reset_index(), "referral-tier-confusion", key="perf_tiers_csv")


def _training_counts(base: EvaluationBase) -> tuple[dict | None, str]:
    run = base.selection.run
    return training_class_counts(run_config(run)) if run else (None, "no run selected")


def distribution_section(base: EvaluationBase) -> None:
    """Class distribution, training vs test: threshold-free, the figure built once per file and training counts."""
    train_counts, train_note = _training_counts(base)
    distribution, fig = class_distribution_view(base.file, base.task,
                                                tuple(train_counts.items()) if train_counts else None)
    st.plotly_chart(fig, key="perf_distribution")
    figure_downloads(fig, "class-distribution", key="perf_distribution_dl")
    st.caption(f"Training counts: {plain(train_note)}." if train_counts else
               f"Training counts unavailable: {plain(train_note)}.")
    table_download(distribution, "class-distribution", key="perf_distribution_csv")


def balance_section(base: EvaluationBase) -> None:
    _balance_subsection(base, _training_counts(base)[0])


def prevalence_section(ev: Evaluation) -> None:
    """Accuracy at the calls and PPV/NPV at another prevalence: these move with the operating point."""
    classes = list(ev.task.classes)
    test_counts = label_counts(ev.arrays.truth, classes)
    cols = st.columns(3)
    metric_card(cols[0], "Accuracy", ev.summary.accuracy)
    metric_card(cols[1], "Balanced accuracy", None, value=ev.summary.balanced_accuracy,
                help="Mean sensitivity over the classes: every class counts the same, however rare.")
    cols[2].metric("Classes in the test set", f"{sum(v > 0 for v in test_counts.values())} of {len(classes)}")

    st.markdown(f"**PPV and NPV at another prevalence** ({plain(ev.view.name)}, at the current operating point)")
    test_prevalence = ev.scores.n_positive / len(ev.scores) if len(ev.scores) else float("nan")
    default = float(np.clip(test_prevalence if np.isfinite(test_prevalence) else 0.1, 0.001, 0.999))
    prevalence = st.number_input("Prevalence of the positive group where the model will be used", 0.001, 0.999,
                                 value=round(default, 3), step=0.01, format="%.3f", key="perf_prevalence")
    ppv, npv = predictive_values_at_prevalence(ev.rates, prevalence)
    cols = st.columns(2)
    metric_card(cols[0], f"PPV at prevalence {prevalence:.3g}", ppv)
    metric_card(cols[1], f"NPV at prevalence {prevalence:.3g}", npv)
    curve = predictive_value_curve(ev.rates, PREVALENCE_GRID)
    fig = predictive_values_figure(curve, prevalence, test_prevalence, title="Predictive values vs prevalence")
    st.plotly_chart(fig, key="perf_ppv_npv")
    figure_downloads(fig, "ppv-npv-vs-prevalence", key="perf_ppv_npv_dl")
    table_download(curve, "ppv-npv-vs-prevalence", key="perf_ppv_npv_csv")


def _balance_subsection(ev: EvaluationBase, train_counts: dict | None) -> None:
    st.markdown("**What class balancing did in training**")
    config = run_config(ev.selection.run)
    balance = str(config.get("balance") or "none")
    described = {"none": "No class balancing: each image counted once in the loss, batches drawn as the data "
                         "came.",
                 "weights": "Class-weighted loss: each class's cross-entropy weighted by n / (classes x count), so "
                            "every class carries the same share of the loss.",
                 "sampler": "Balanced sampler: training images drawn with replacement, each class equally "
                            "likely, so every class fills the same share of the batches."}
    st.write(described.get(balance, f"Class balancing setting: {balance}"))
    recorded = recorded_balance(ev.selection.run)
    if recorded:
        st.caption("Recorded by the trainer:")
        st.json(recorded, expanded=False)
    if train_counts and balance in ("none", "weights", "sampler"):
        effect = class_balance_effect(train_counts, balance)
        st.dataframe(effect, hide_index=True, key="perf_balance_table",
                     column_config={"share_of_images": st.column_config.NumberColumn(format="percent"),
                                    "share_of_training_signal": st.column_config.NumberColumn(
                                        "share of the training signal", format="percent"),
                                    "loss_weight": st.column_config.NumberColumn(format="%.3f")})
        st.caption("Loss weights and shares are derived from the run's setting and its training counts "
                   "(the trainer's formula), not read back from the trainer.")
        table_download(effect, "class-balancing", key="perf_balance_csv")


def calibration_section(ev: EvaluationBase) -> None:
    top = cached_reliability(ev.file, ev.task)
    view_bins = cached_reliability(ev.file, ev.task, ev.view)
    cols = st.columns(4)
    cols[0].metric("ECE (top label)", f"{top.ece:.3f}", help="Expected calibration error of the model's "
                   "confidence in its own call, 10 equal-width bins (0 = perfectly calibrated).")
    cols[1].metric("Brier score (all classes)", f"{brier_score(ev.arrays.truth, ev.arrays.probabilities):.3f}",
                   help="Mean squared distance between the probabilities and the one-hot truth (0 best, 2 worst).")
    cols[2].metric(f"ECE ({ev.view.name})", f"{view_bins.ece:.3f}")
    cols[3].metric(f"Brier ({ev.view.name})", f"{brier_score(ev.scores.truth.astype(int), ev.scores.scores):.3f}")
    fig = reliability_view_figure(ev.file, ev.task, ev.view)
    st.plotly_chart(fig, key="perf_reliability")
    figure_downloads(fig, "reliability-diagram", key="perf_reliability_dl")
    table = pd.DataFrame({"bin_low": top.edges[:-1], "bin_high": top.edges[1:], "images": top.counts,
                          "mean_confidence": top.mean_predicted, "accuracy": top.observed})
    table_download(table, "reliability-top-label", key="perf_reliability_csv")


def headline_text(ev: Evaluation) -> str:
    """One line for the page top: what the operating point is."""
    return (f"Operating point on **{plain(ev.view.name)}**: threshold {ev.point.threshold:.3f} "
            f"({plain(ev.point.rule)}), sensitivity {interval_text(ev.rates.sensitivity)}, "
            f"specificity {interval_text(ev.rates.specificity)}.")


def referral_section(ev: EvaluationBase) -> None:
    """Refer when unsure: the model's referral band, what it did on this test set (coverage, error among the calls
    made vs overall, weighted error with referrals priced), the risk-coverage curve, the confusion matrix with a
    referral column, and the band another target would give (from the calibration scores in the model card)."""
    from core.metrics.model_operating_point import operating_view
    from core.metrics.multiclass import referral_confusion
    from core.metrics.selective import (ASSUMPTION, DEFAULT_CONFIDENCE, DEFAULT_TARGET_ERROR, apply_band,
                                        calibrate_band, calibration_arrays, risk_coverage_curve, selective_summary)
    from core.plots.selective import risk_coverage_figure
    from core.train.run_folder import run_model_card
    from dashboard.evaluation import cached_referrals, headline_weighted_error_referred, referral_cost

    view = operating_view(ev.task)
    if view is None:
        st.info("This task has no binary view deciding every case, so the model cannot refer cases by a band.")
        return
    referred, band = cached_referrals(ev.file, ev.task)
    try:
        card = run_model_card(ev.selection.run) if ev.selection.run else None
    except InputError:
        card = None
    calibration = (card or {}).get("referral_calibration")
    threshold = band.threshold if band is not None else ((calibration or {}).get("threshold")
                                                         or ((card or {}).get("operating_point") or {}).get("threshold"))
    if referred is None:
        st.info("These predictions refer nothing to a reader: every case was called. "
                + (f"Why there is no band: {plain(calibration['reason'])}." if calibration and
                   calibration.get("reason") else "The model has no referral band (trained before referral bands, "
                   "or without an operating point)."), icon=":material/info:")
    data = binary_view_data(ev.arrays.truth, ev.arrays.probabilities, ev.task.classes, view,
                            y_pred=ev.arrays.model_calls)
    if referred is not None:
        if band is not None:
            st.markdown(f"**Stored band** ({plain(view.name)}): {plain(band.describe())}.")
        summary = selective_summary(data.truth, data.calls, referred[data.rows])
        cols = st.columns(4)
        cols[0].metric("Referred to a reader", f"{summary.n_referred:,} of {summary.n:,}",
                       help="Images whose score fell in the model's referral band: left to a reader, not called.")
        metric_card(cols[1], "Coverage (share called)", summary.coverage)
        metric_card(cols[2], "Error among calls made", summary.error_among_calls,
                    help=f"Wrong side of '{plain(view.name)}' among the images the model called"
                         + (f"; the band's target: at most {band.target_error:.0%}" if band else "") + ".")
        metric_card(cols[3], "Error over every image", summary.error_overall,
                    help="The same error if the model had called every image (no referral).")
        penalty = active_penalty(ev.ws, ev.task)
        penalty_name = penalty.name
        cost, cost_note = referral_cost(ev.ws, ev.task, penalty)
        calls = ev.arrays.model_calls
        priced = headline_weighted_error_referred(ev.file, ev.task, calls, penalty, referred, cost)
        plain_error = headline_weighted_error(ev.file, ev.task, calls, penalty)
        cols = st.columns(2)
        metric_card(cols[0], "Weighted error, referrals priced", priced, percent=False,
                    help=f"Mean penalty per image with '{plain(penalty_name)}'; a referral costs "
                         f"{', '.join(f'{c}: {v:g}' for c, v in zip(ev.task.classes, cost))} ({plain(cost_note)}; "
                         "edit it on the Penalties page).")
        metric_card(cols[1], "Weighted error, every image called", plain_error, percent=False)
        st.caption(f"Model's own calls. Intervals: {plain(summary.coverage.method)} (coverage and errors); "
                   f"{plain(priced.method)} (weighted error). The guarantee assumes {plain(ASSUMPTION)}.")
        confusion = referral_confusion(ev.arrays.truth, calls, referred, ev.task.classes)
        fig = confusion_figure(confusion.calls, clickable=False, referred=confusion.referred,
                               title="Confusion matrix with referrals (model's own calls)")
        st.plotly_chart(fig, key="perf_referral_confusion")
        figure_downloads(fig, "confusion-with-referrals", key="perf_referral_confusion_dl")
        table = pd.DataFrame(confusion.table(), index=pd.Index(ev.task.classes, name="true class"),
                             columns=[*ev.task.classes, REFERRED_LABEL])
        table_download(table.reset_index(), "confusion-with-referrals", key="perf_referral_confusion_csv")
    if threshold is None or not data.truth.size:
        return
    st.markdown("**Risk and coverage**: bands of growing width around the model's threshold "
                f"{float(threshold):.3f}; the wider the band, the fewer cases called.")
    target_col, confidence_col = st.columns(2)
    target = target_col.number_input("Target error among calls", 0.005, 0.5, value=float(
        band.target_error if band else DEFAULT_TARGET_ERROR), step=0.01, format="%.3f", key="perf_referral_target")
    confidence = confidence_col.number_input("Confidence", 0.5, 0.995, value=float(
        band.confidence if band else DEFAULT_CONFIDENCE), step=0.05, format="%.3f", key="perf_referral_confidence")
    curve = risk_coverage_curve(data.truth, data.scores, float(threshold))
    extra, chosen = [], None
    if calibration and calibration.get("scores") is not None:  # a reason alone says why there is no band
        try:
            cal_truth, cal_scores, cal_threshold = calibration_arrays(calibration)
            cal_curve = risk_coverage_curve(cal_truth, cal_scores, cal_threshold)
            extra = [(f"calibration cases ({calibration.get('source') or 'training'})", cal_curve.coverage,
                      cal_curve.error)]
            chosen = calibrate_band(cal_truth, cal_scores, cal_threshold, target, confidence,
                                    str(calibration.get("source") or "calibration cases"))
        except InputError as exc:
            show_error("No band for this target:", exc)
    point = None
    if chosen is not None:
        mask = apply_band(data.scores, chosen)
        at = selective_summary(data.truth, data.calls, mask)
        point = (at.coverage.value, at.error_among_calls.value)
        st.caption(f"For a target of {target:.1%} at {confidence:.0%} confidence the calibration cases give: "
                   f"{plain(chosen.describe())}. On this test set it would call {at.coverage.value:.0%} "
                   f"({interval_text(at.coverage)}) with {interval_text(at.error_among_calls)} error among calls.")
    elif not calibration:
        st.caption("The model card stores no calibration scores, so another target cannot be calibrated here.")
    fig = risk_coverage_figure(curve.coverage, curve.error, target=target, band_point=point,
                               band_label="band for this target", extra_curves=extra,
                               title=f"Risk vs coverage ({view.name})")
    st.plotly_chart(fig, key="perf_risk_coverage")
    figure_downloads(fig, "risk-coverage", key="perf_risk_coverage_dl")
    table_download(pd.DataFrame(curve.table()), "risk-coverage", key="perf_risk_coverage_csv")


@st.cache_data(show_spinner="Reading the subgroup column of the test set...", max_entries=32)
def subgroup_column_values(root: str, test_set_id: str, fingerprint: str, file: PredictionsFile, column: str) -> list:
    """The column's value per predictions row (image properties are read from every image once)."""
    from core.report.subgroups import subgroup_values
    from dashboard.common import load_predictions, registered_dataset

    ws = Workspace.open(root)
    ds = registered_dataset(ws, ws.get_dataset(test_set_id))
    return subgroup_values(load_predictions(file)[0], ds, [column])[column].tolist()


@st.cache_data(show_spinner="Analysing the subgroups...", max_entries=32)
def _subgroup_table(file: PredictionsFile, task: Task, view: BinaryView, calls: np.ndarray, column: str,
                    values: list, penalty: np.ndarray):
    from core.report.subgroups import subgroup_tables_of
    from dashboard.evaluation import evaluation_inputs

    arrays = evaluation_inputs(file, task)
    return subgroup_tables_of(task, arrays.truth, arrays.probabilities, calls, pd.DataFrame({column: values}),
                              view=view, penalty=penalty, patient_ids=arrays.patient_ids)[column]


def subgroups_section(ev: Evaluation) -> None:
    """Who does the model fail? One column of the test set (its own, e.g. sex or site, or an image property): a
    forest plot of AUC, sensitivity or specificity per subgroup against the whole test set, and the table with the
    gaps to the rest, the Holm-adjusted p-values and the heterogeneity tests."""
    from core.metrics.intervals import p_value_text
    from core.plots.subgroups import FOREST_STATISTICS, forest_figure
    from core.report.subgroups import available_subgroup_columns, subgroup_rows_frame
    from dashboard.common import registered_dataset

    record = ev.selection.test_set
    if record is None:
        st.info("This test set is not in the workspace's registry, so its subgroup columns are unknown.")
        return
    try:
        ds = registered_dataset(ev.ws, record)
    except InputError as exc:
        show_error("The test set cannot be read, so its subgroups are unknown:", exc)
        return
    own = ds.subgroup_columns()
    if not own:
        st.caption("This test set has no columns of its own beyond image, label, patient and split (a manifest's "
                   "extra columns such as sex, age, site or device become subgroups); the image properties are read "
                   "from the images.")
    left, right = st.columns([2, 3])
    column = left.selectbox("Split the test set by", available_subgroup_columns(ds), key="perf_subgroup_column",
                            help="A column of the test set's manifest, or an image property from the audit's scan "
                                 "(numbers with many values are cut into quartiles).")
    statistic = right.radio("Statistic", list(FOREST_STATISTICS), format_func=FOREST_STATISTICS.get,
                            horizontal=True, key="perf_subgroup_statistic")
    penalty = active_penalty(ev.ws, ev.task)
    try:
        values = subgroup_column_values(str(ev.ws.root), str(record["id"]), str(record.get("fingerprint")), ev.file,
                                        column)
        table = _subgroup_table(ev.file, ev.task, ev.view, np.asarray(ev.calls), column, values, penalty)
    except InputError as exc:
        show_error("The subgroups cannot be analysed:", exc)
        return
    label = FOREST_STATISTICS[statistic]
    fig = forest_figure(table, statistic, title=f"{label} by {column}")
    st.plotly_chart(fig, key="perf_subgroup_forest")
    figure_downloads(fig, f"subgroups-{statistic}", key="perf_subgroup_forest_dl")
    frame = subgroup_rows_frame(table)
    shown = with_interval_text(frame, ["sensitivity", "specificity", "sensitivity_gap", "specificity_gap"])
    shown = with_interval_text(shown, ["auc", "auc_gap", "weighted_error"], percent=False)
    for name in ("auc", "sensitivity", "specificity"):
        shown[f"{name}_p_holm"] = [p_value_text(p) for p in frame[f"{name}_p_holm"]]
    shown["small"] = ["yes" if s else "" for s in frame["small"]]
    st.dataframe(shown[[c for c in shown.columns if not c.endswith(("_low", "_high"))]], hide_index=True,
                 key="perf_subgroup_table")
    table_download(frame, f"subgroups-{column}", key="perf_subgroup_csv")
    def p_text(p) -> str:
        text = p_value_text(p)
        return f"p {text}" if text.startswith("<") else f"p = {text}"

    tests = "; ".join(f"{FOREST_STATISTICS[name]} {p_text(test.p_value)} ({plain(test.method)}"
                      + (f", {plain(test.reason)}" if test.reason else "") + ")"
                      for name, test in table.heterogeneity.items())
    st.caption(f"On **{plain(ev.view.name)}**, calls: {plain(ev.calls_rule)}. Heterogeneity across the subgroups: "
               f"{tests}. Gaps are each subgroup minus the rest of the test set; "
               f"{plain(table.correction_text)}. Small: fewer than {table.small_group} positive or negative images "
               "(read the interval, not the point).")
    for note in table.notes:
        st.caption(plain(note))
    _subgroups_before_after(ev, record, column, values)


@st.cache_data(show_spinner="Comparing the calls before and after...", max_entries=16)
def _before_after_table(before: PredictionsFile, after: PredictionsFile, task: Task, view: BinaryView, column: str,
                        before_values: list, after_values: list) -> pd.DataFrame:
    from core.report.subgroups import before_after_subgroups
    from dashboard.common import load_predictions

    return before_after_subgroups(load_predictions(before)[0], load_predictions(after)[0], task, column,
                                  before_values, after_values, view=view)


def _subgroups_before_after(ev: Evaluation, record: dict, column: str, values: list) -> None:
    """For an adapted or recalibrated run (its card's `derived_from`): the source run's sensitivity and specificity
    per subgroup beside this run's, each at its own calls, when both have predictions on this test set."""
    from core.infer.site_check import read_card
    from core.report.subgroups import shift_source

    try:
        link = shift_source(read_card(ev.ws, ev.selection.run_id))
    except InputError:
        return
    if link is None:
        return
    source_id, done = link
    source_run = ev.ws.get_run(source_id) or {}
    source_name = source_run.get("name") or source_id
    st.markdown(f"**Before and after: this run was {done} from {plain(source_name)}**")
    found = ev.ws.find_predictions(source_id, ev.selection.dataset_id)
    if found is None or not Path(found["path"]).is_file():
        st.info("The source run has no predictions on this test set, so the calls before cannot be shown: run it "
                "on this test set on the **Test sets** page.", icon=":material/info:")
        return
    before = PredictionsFile.at(found["path"])
    try:
        before_values = subgroup_column_values(str(ev.ws.root), str(record["id"]), str(record.get("fingerprint")),
                                               before, column)
        table = _before_after_table(before, ev.file, ev.task, ev.view, column, before_values, list(values))
    except InputError as exc:
        show_error("The calls before and after cannot be compared per subgroup:", exc)
        return
    shown = with_interval_text(table, [f"{name} {when}" for name in ("sensitivity", "specificity")
                                       for when in ("before", "after")])
    for name in ("sensitivity", "specificity"):
        shown[f"{name} change"] = [f"{v:+.1%}" if np.isfinite(v) else "n/a" for v in table[f"{name} change"]]
    shown["small"] = ["yes" if s else "" for s in table["small"]]
    st.dataframe(shown, hide_index=True, key="perf_subgroup_before_after")
    table_download(table, f"subgroups-before-after-{column}", key="perf_subgroup_before_after_csv")
    st.caption(f"On **{plain(ev.view.name)}**, each run at its own calls (its operating point, as stored with its "
               "predictions): before = the source run, after = this run. Wilson 95% intervals; calls changed: "
               "images of the subgroup whose call changed side.")
