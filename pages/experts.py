"""Experts vs model: readers on the model's ROC, LR forest plot, weighted error, paired tests, readings in and out."""

from __future__ import annotations

import streamlit as st

from core.errors import InputError
from core.infer.predictions import imported_provenance
from core.plots.experts import lr_forest_figure, reader_roc_figure, weighted_error_figure
from core.readers import list_readings, load_readings, reading_coverage, store_readings
from dashboard.access_ui import current_actor
from dashboard.common import get_workspace, select_evaluation
from dashboard.downloads import figure_downloads
from dashboard.evaluation_ui import threshold_slider
from dashboard.experts_ui import (LR_METHOD_LABELS, MATCH_LABELS, comparison, ensure_demo_readers,
                                  matched_sentences, model_point_of, paired_table, penalty_in_use,
                                  reader_subgroups_section, simulated_notice, summary_table)
from dashboard.downloads import table_download
from dashboard.mrmc_ui import mrmc_section
from dashboard.widgets import plain, show_error
from dashboard.import_ui import imported_notice

st.title("Experts vs model")
st.caption("Each reader's sensitivity and specificity on the model's ROC curve, likelihood ratios, weighted error "
           "and paired tests on the same images. Readings come from CSV imports, the in-app **Reader study**, or "
           "(for the built-in demo) simulated readers.")

ws = get_workspace()
evaluation = select_evaluation(ws, key="experts")
if evaluation is None:
    st.stop()
imported_notice(evaluation)  # scores imported from a file: where they came from
task, frame, test_set_id = evaluation.task, evaluation.frame, evaluation.dataset_id
if task.kind == "multilabel" or not task.binary_views:
    st.info(f"Reader comparisons need one label per image and a binary view; task {plain(task.name)} has "
            f"{'several labels per image' if task.kind == 'multilabel' else 'no binary view'}.")
    st.stop()
if ensure_demo_readers(ws, test_set_id, frame, task):
    st.toast("Added the demo's SIMULATED readers to the demo test set.", icon=":material/science:")

tab_compare, tab_readings, tab_mrmc = st.tabs(["Readers vs model", "Readings: import and export", "MRMC study"])

# The readings tab runs first so that an import is part of this run's comparison.
with tab_readings:
    st.subheader("Import readings")
    st.caption("CSV, long format `reader_id,image_id,label[,seconds]` or wide format `image_id` plus one column "
               "per reader (an empty cell = not graded). Image ids must be this test set's; labels are the task's "
               f"classes ({', '.join(task.classes)}). Every problem is listed and nothing is imported until the "
               "whole file is valid.")
    upload = st.file_uploader("Readings CSV", type=["csv"], key="experts_upload")
    replace = st.checkbox("Replace readers who already have readings for this test set", key="experts_replace")
    if st.button("Import readings", key="experts_import", disabled=upload is None, type="primary"):
        try:
            parsed = load_readings(upload, task, known_image_ids=frame["image_id"])
            count = store_readings(ws, test_set_id, parsed, upload.name, replace=replace,
                                   actor=current_actor())
            st.success(f"Imported {count} readings from {parsed['reader_id'].nunique()} reader(s).",
                       icon=":material/check_circle:")
        except InputError as exc:
            show_error("The readings were not imported (nothing was stored).", exc)

readings = list_readings(ws, test_set_id)
with tab_readings:
    st.subheader("Readings of this test set")
    if readings.empty:
        st.info("No readings for this test set yet.")
    else:
        st.dataframe(readings, hide_index=True, width="stretch", key="experts_readings_table")
        table_download(readings, f"readings-{test_set_id}", key="experts_readings_csv", label="Readings (CSV)")

with tab_mrmc:  # before the comparison tab, which may stop the page
    mrmc_section(ws)

with tab_compare:
    if readings.empty:
        st.info("No readings for this test set yet: import a CSV in the next tab, or grade images on the "
                "**Reader study** page.", icon=":material/info:")
        st.stop()
    simulated_notice(readings["reader_id"])
    controls = st.columns([2, 2, 2, 2])
    views = [v.name for v in task.binary_views]
    view = controls[0].selectbox("Binary view", views, key="experts_view",
                                 help="Which classes count as positive; readers' calls are grouped the same way.")
    lr_ci = controls[1].radio("LR interval method", list(LR_METHOD_LABELS), format_func=LR_METHOD_LABELS.get,
                              key="experts_lr_ci", help="Log (Simel 1991), Koopman score (1984) or the log method "
                                                        "with 0.5 added to each count and total.")
    match = controls[2].radio("Model operating point", list(MATCH_LABELS), format_func=MATCH_LABELS.get,
                              key="experts_match", help="For the paired comparisons: the model at a threshold, or "
                                                        "at the threshold that gives each reader's own "
                                                        "specificity (or sensitivity) on their images.")
    # Opens at the threshold in use (the model's own point until the user moves it: core.metrics.threshold_in_use);
    # only a move is recorded as the user's threshold, which the other pages then follow.
    threshold = threshold_slider("Model threshold on the view's score", "experts",
                                 model_point=model_point_of(evaluation.run), view_name=view,
                                 imported=imported_provenance(evaluation.meta) is not None, container=controls[3],
                                 help="Score >= threshold is a positive call. Shared with the other pages.").value
    penalty = penalty_in_use(ws, task)
    penalty_name = penalty.name

    try:
        result = comparison(evaluation.file, readings, task, view, threshold, match, penalty, lr_ci)
    except InputError as exc:
        show_error("The readers could not be compared with the model.", exc)
        st.stop()
    compare = result["compare"]

    coverage = reading_coverage(readings, frame["image_id"])
    partial = coverage[coverage["partial"]]
    if not partial.empty:
        st.caption("Partial readers are analysed on the images they graded: "
                   + "; ".join(plain(s) for s in partial["statement"]))

    st.subheader("Readers on the model's ROC curve")
    roc_fig = reader_roc_figure(result["roc"], result["points"], result["model"])
    st.plotly_chart(roc_fig, key="experts_roc")
    figure_downloads(roc_fig, "experts-roc", key="experts_roc_dl")
    st.caption("Crosshairs: 95% Wilson intervals of sensitivity (vertical) and of 1 - specificity (horizontal). "
               "Diamonds are simulated readers; the cross is the model at the threshold in use.")

    st.subheader("Summary")
    summary = summary_table(compare, result["model"])
    st.dataframe(summary, hide_index=True, width="stretch", key="experts_summary")
    table_download(compare, f"readers-vs-model-{test_set_id}", key="experts_compare_csv",
                 label="Full comparison (CSV)")

    st.subheader("Likelihood ratios")
    lr_fig = lr_forest_figure(result["lr"])
    st.plotly_chart(lr_fig, key="experts_forest")
    figure_downloads(lr_fig, "experts-likelihood-ratios", key="experts_forest_dl")
    lr_numbers = result["lr"][["reader_id", "measure", "value", "low", "high", "method", "reason"]]
    st.dataframe(lr_numbers, hide_index=True, width="stretch", key="experts_lr_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("value", "low", "high")})
    table_download(result["lr"], f"likelihood-ratios-{test_set_id}", key="experts_lr_csv")

    st.subheader("Weighted error")
    st.caption(f"Penalty matrix: {plain(penalty_name)} (edit it on the **Penalties** page). The hatched bars are the "
               "model on exactly the images each reader graded.")
    we_fig = weighted_error_figure(result["weighted"])
    st.plotly_chart(we_fig, key="experts_weighted")
    figure_downloads(we_fig, "experts-weighted-error", key="experts_weighted_dl")
    table_download(result["weighted"], f"weighted-error-{test_set_id}", key="experts_weighted_csv")

    st.subheader("Paired comparisons on the same images")
    st.caption("McNemar's test (exact and mid-p) on which images each got right in the binary view; differences "
               "in sensitivity and specificity are model minus reader with paired 95% intervals (Newcombe).")
    for sentence in matched_sentences(compare, match):
        st.markdown(f"- {sentence}")
    paired = paired_table(compare)
    st.dataframe(paired, hide_index=True, width="stretch", key="experts_paired",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in paired.columns
                                if c.startswith(("reader s", "model s", "McNemar"))})
    table_download(paired, f"paired-comparisons-{test_set_id}", key="experts_paired_csv")

    st.subheader("By subgroup: is the model better than the readers in every group?")
    reader_subgroups_section(ws, evaluation, readings, view, threshold, penalty)
