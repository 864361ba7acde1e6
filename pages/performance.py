"""Performance: one model on one test set, every number with its interval, at an operating point the user moves."""

from __future__ import annotations

import streamlit as st

from core.data.tasks import BinaryView
from core.errors import InputError
from core.metrics import headline, macro_and_weighted_auc, ordinal_agreement
from core.metrics.dashboard import (available_views, call_summary, calls_at_threshold, covers_all_classes,
                                    multilabel_threshold_table, urgent_view)
from core.plots import PointMarker, class_colors, roc_figure
from dashboard.access_ui import signed_in_here
from dashboard.audit_ui import duplicates_notice, performance_audit_banner
from dashboard.common import get_workspace
from core.train.run_folder import run_model_card
from dashboard.decision_ui import decision_section
from core.infer.site_check import adaptation_text
from core.infer.predictions import imported_provenance
from core.metrics.threshold_in_use import NO_IMPORTED_POINT
from dashboard.operating_ui import (operating_point_note, recalibration_panel, show_recalibration_result,
                                    training_operating_point, use_model_point)
from dashboard.site_ui import site_section
from dashboard.downloads import figure_downloads, table_download
from dashboard.evaluation import (active_penalty, cached_class_aucs, cached_view_scores, evaluation_inputs,
                                  headline_macro_auc, headline_urgent_auc, headline_weighted_error)
from dashboard.evaluation_figures import class_figures, view_roc_series
from dashboard.evaluation_ui import evaluation_or_stop, metric_card, operating_point_ui, with_interval_text
from dashboard.performance_sections import (ROC_NOTE, Evaluation, EvaluationBase, balance_section,
                                            calibration_section, class_section, confusion_section,
                                            distribution_section, headline_text, pr_classes_section, pr_view_section,
                                            prevalence_section, referral_section, roc_classes_section,
                                            roc_view_section, subgroups_section, tiers_section)
from dashboard.widgets import plain, show_error, sticky_select

CALL_RULES = {"point": "class calls follow the operating point",
              "argmax": "the model's own calls (its operating point from training, else most probable class)"}

st.title("Performance")
st.caption("A trained model on a test set: headline rates with 95% intervals, ROC and precision-recall curves, "
           "confusion matrix, per-class rates, class imbalance, calibration and referral tiers.")

ws = get_workspace()
selection = evaluation_or_stop(ws, key="perf")
task = selection.task
file = selection.file
try:
    arrays = evaluation_inputs(file, task)
except InputError as exc:
    show_error("These predictions cannot be evaluated:", exc)
    st.stop()
audit = performance_audit_banner(ws, selection)


def multilabel_view() -> None:
    """Multi-label tasks: one yes/no question per label, so per-label AUROC and rates at a threshold."""
    st.info("This is a **multi-label** task: each label is its own yes/no question, so there is no single "
            "confusion matrix, referral tier or penalty-weighted error. Shown: AUROC per label (DeLong interval) "
            "and each label's sensitivity and specificity when called at the threshold.", icon=":material/info:")
    label = sticky_select("Label whose ROC sets the operating point", task.classes, "perf_label")
    scores = cached_view_scores(file, task, BinaryView(label, (label,), ()))
    point = operating_point_ui(scores, key="perf")
    aucs = cached_class_aucs(file, task)
    table = multilabel_threshold_table(arrays, point.threshold, aucs)
    _, weighted = macro_and_weighted_auc(aucs, table["positives"])
    cols = st.columns(3)
    metric_card(cols[0], "Macro AUROC", headline_macro_auc(file, task), percent=False,
                help="Mean AUROC over the labels; the interval and its method are the exported report's.")
    metric_card(cols[1], "Prevalence-weighted AUROC", None, percent=False, value=weighted)
    cols[2].metric("Images", f"{arrays.n:,}")
    shown = with_interval_text(with_interval_text(table, ["sensitivity", "specificity"]), ["auc"], percent=False)
    st.dataframe(shown, hide_index=True, key="perf_label_table",
                 column_config={"prevalence": st.column_config.NumberColumn(format="percent")})
    table_download(table, "per-label-metrics", key="perf_label_csv")
    left, right = st.columns(2)
    series = view_roc_series(file, task, BinaryView(label, (label,), ()), class_colors(task.classes)[label])
    with left:
        if series is None:
            st.info(f"Label {plain(label)} has no positive or no negative images: no ROC curve.")
        else:
            fig = roc_figure([series], [PointMarker.on_roc("operating point", point)], title=f"ROC: {label}")
            st.plotly_chart(fig, key="perf_label_roc")
            figure_downloads(fig, f"roc-{label}", key="perf_label_roc_dl")
    with right:
        label_roc, _ = class_figures(file, task)
        st.plotly_chart(label_roc, key="perf_labels_roc")
        figure_downloads(label_roc, "roc-per-label", key="perf_labels_roc_dl")


if task.kind == "multilabel":
    multilabel_view()
    st.stop()

views = available_views(task)
preferred = urgent_view(task) or views[0]
names = [v.name for v in views]
controls = st.container(border=True)
top_left, top_right = controls.columns([2, 3])
view_name = sticky_select("Binary view (ROC, operating point, PPV/NPV)", names, "perf_view", default=preferred.name,
                          container=top_left)
view = views[names.index(view_name)]
scores = cached_view_scores(file, task, view)
try:
    model_card = run_model_card(selection.run)
except InputError as exc:  # the predictions stay usable; only the model's own operating point is unknown
    show_error("The run's model card cannot be read, so its operating point is not shown.", exc, container=top_right)
    model_card = None
model_point = training_operating_point(model_card)
adapted = adaptation_text(model_card, (selection.run or {}).get("name"))
use_model_point(model_point, view, key="perf", container=top_right)
imported = imported_provenance(selection.meta) is not None  # scores from a file: no model, no operating point
picker = top_right.container()  # the operating-point picker: drawn by the fragment below
with top_right:
    if imported:
        st.caption(f"{NO_IMPORTED_POINT.capitalize()}: the calls are the file's own, else the most probable class.")
    else:
        operating_point_note(model_point, view.name, adapted)
decides_all = covers_all_classes(view, task)
call_rule = top_left.radio("Class calls", list(CALL_RULES), format_func=CALL_RULES.get, key="perf_calls",
                           disabled=not decides_all,
                           help="Follow the operating point: a case over the threshold gets the most probable "
                                "class of the positive group, otherwise the most probable of the negative group. "
                                "Most probable class: the model's own calls (as in Kermany et al.).")
if not decides_all:
    top_left.caption("This view leaves some classes out, so the class calls stay the model's most probable "
                     "class; the threshold moves this view's numbers.")
if adapted:
    st.info(plain(adapted), icon=":material/tune:")  # the calls below are this adapted run's


def recalibrate() -> None:
    """The labelled re-fit (a new run), wherever the page draws it."""
    result = recalibration_panel(ws, selection.run_id, selection.dataset_id, arrays.n, key="perf_recal")
    if result is not None:
        show_recalibration_result(result, key="perf_recal")


# The site check: when this test set looks shifted for the run, both remedies side by side (the labelled re-fit
# then lives there rather than in its tab).
refit_shown = site_section(ws, selection.run or {"id": selection.run_id}, selection.dataset_id, key="perf_site",
                           run_key="perf_run", card=model_card, recalibrate=recalibrate)

base = EvaluationBase(ws=ws, selection=selection, task=task, file=file, arrays=arrays, view=view, scores=scores)
aucs = cached_class_aucs(file, task)

# The page's layout, in order. What moves with the threshold is drawn into these places by the fragment below;
# the rest is drawn once per full rerun, from cached figures.
cards_place, text_place, duplicates_place = st.container(), st.container(), st.container()
tabs = st.tabs(["ROC", "Precision-recall", "Confusion matrix", "Per class", "Referral tiers", "Class imbalance",
                "Calibration", "Decision curve", "Site recalibration", "Refer when unsure", "Subgroups"])
roc_left, roc_right = tabs[0].columns(2)
pr_left, pr_right = tabs[1].columns(2)
distribution_place, prevalence_place, balance_place = (tabs[5].container() for _ in range(3))


@st.fragment
def at_the_operating_point() -> None:
    """Everything the operating point moves: the picker, the calls, the headline cards, the marked curves, the
    confusion matrix, per-class rates, tiers, PPV/NPV and subgroups. Moving the threshold reruns this alone; the
    threshold-free figures around it stay as drawn. Its rerun skips the sign-in gate: the sign-in is checked first."""
    signed_in_here()
    point = operating_point_ui(scores, key="perf", container=picker, model_point=model_point, view_name=view.name,
                               imported=imported)
    if decides_all and call_rule == "point":
        calls = calls_at_threshold(arrays.probabilities, task.classes, view, point.threshold)
        rule_text = f"calls at threshold {point.threshold:.3f} on {view.name}" + (
            " (probabilities of an adapted run)" if adapted else "")
    else:
        calls = arrays.model_calls
        rule_text = ("model's own calls (operating point of an adapted run)" if adapted and model_point is not None
                     else "model's own calls (operating point from training)" if model_point is not None
                     else "model's most probable class")
    penalty = active_penalty(ws, task)
    penalty_name = penalty.name
    summary = call_summary(arrays.truth, calls, task.classes, penalty, arrays.patient_codes,
                           probabilities=arrays.probabilities)
    ev = Evaluation(ws=ws, selection=selection, task=task, file=file, arrays=arrays, view=view, scores=scores,
                    point=point, rates=point.metrics(), calls=calls, calls_rule=rule_text, summary=summary,
                    penalty_name=penalty_name)
    # The headline statistics and their interval methods are core.metrics.headline's, as in the exported report.
    headline_intervals = {"Accuracy": headline.accuracy(arrays.truth, calls),
                          "Sensitivity": ev.rates.sensitivity, "Specificity": ev.rates.specificity,
                          "Weighted error": headline_weighted_error(file, task, calls, penalty)}
    with cards_place:
        cards = st.columns(5)
        metric_card(cards[0], "Accuracy", headline_intervals["Accuracy"],
                    help=f"Share of images whose class call is right ({plain(rule_text)}).")
        # Short labels (a card is narrow); the binary view they are measured on is in the help text.
        metric_card(cards[1], "Sensitivity", ev.rates.sensitivity,
                    help=f"Share of positive images called positive, on the view '{plain(view.name)}'.")
        metric_card(cards[2], "Specificity", ev.rates.specificity,
                    help=f"Share of negative images called negative, on the view '{plain(view.name)}'.")
        metric_card(cards[3], "Weighted error", headline_intervals["Weighted error"], percent=False,
                    help=f"Mean penalty per image with the penalty matrix '{plain(penalty_name)}' (edit it on the "
                         "Penalties page).")
        urgent_auc = headline_urgent_auc(file, task)
        if urgent_auc is not None:
            headline_intervals["Urgent-referral AUC"] = urgent_auc
            metric_card(cards[4], "Urgent-referral AUC", urgent_auc, percent=False,
                        help=f"{', '.join(task.urgent_classes())} vs the rest, scored by the summed probability.")
        else:
            headline_intervals["Macro AUC"] = headline_macro_auc(file, task)
            metric_card(cards[4], "Macro AUC (one-vs-rest)", headline_intervals["Macro AUC"], percent=False,
                        help="This task names no urgent classes, so the headline AUC is the mean one-vs-rest AUC.")
        if task.kind == "ordinal":
            agreement = ordinal_agreement(arrays.truth, calls, task.classes)
            extra = st.columns(4)
            metric_card(extra[0], "Quadratic weighted kappa", agreement.quadratic_kappa.kappa, percent=False,
                        help="Agreement between calls and true grades; near misses cost less than distant ones.")
            metric_card(extra[1], "Linear weighted kappa", agreement.linear_kappa.kappa, percent=False)
            metric_card(extra[2], "Within one grade", None, value=agreement.within_one_grade)
            metric_card(extra[3], "Mean absolute grade error", None, percent=False,
                        value=agreement.mean_absolute_error)
    with text_place:
        st.markdown(headline_text(ev))
        st.caption("Interval methods (the exported report's, for the same settings): " + "; ".join(
            f"{name}: {plain(interval.method)}" for name, interval in headline_intervals.items()) + ".")
        st.caption(f"{arrays.n:,} images" + (f" from {arrays.n_patients:,} patients; weighted-error interval by "
                                             "patient" if arrays.n_patients is not None else "") +
                   f". Penalty matrix: {plain(penalty_name)}. Class calls: {plain(rule_text)}.")
    with duplicates_place:
        st.empty()  # written on every run, so a fragment rerun always has its place here
        duplicates_notice(ev, audit)
    with roc_left:
        roc_view_section(ev)
    with pr_left:
        pr_view_section(ev)
    with tabs[2]:
        confusion_section(ev)
    with tabs[3]:
        class_section(ev, aucs)
    with tabs[4]:
        tiers_section(ev)
    with prevalence_place:
        prevalence_section(ev)
    with tabs[10]:
        subgroups_section(ev)


at_the_operating_point()

# Threshold-free: drawn on full reruns only (a view, run or test-set change, a page load), from cached figures.
with roc_right:
    roc_classes_section(base)
tabs[0].caption(ROC_NOTE)
with pr_right:
    pr_classes_section(base)
with distribution_place:
    distribution_section(base)
with balance_place:
    balance_section(base)
with tabs[6]:
    calibration_section(base)
with tabs[7]:
    decision_section(base)
with tabs[8]:
    if refit_shown:
        st.caption("This test set looks shifted for this run: the labelled re-fit is shown above, next to the "
                   "label-free adaptation.")
    else:
        recalibrate()
with tabs[9]:
    referral_section(base)
