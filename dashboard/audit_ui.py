"""UI blocks for the dataset audit: the Test sets page's Audit section and the Performance page's shift banner and
duplicate count. Audits run as background jobs (core.audit.jobs on core.jobs); these blocks start them and show
them with dashboard.jobs_ui.

Image ids and reasons are shown with st.text / st.dataframe, never as HTML or markdown; no DICOM header text is
ever shown (the audit keeps none)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from core.audit.duplicates import without_duplicates
from core.audit.jobs import FULL, audit_state, start_audit
from core.errors import InputError
from core.jobs import CANCELLED, FAILED
from core.metrics.intervals import p_value_text
from core.store import Workspace
from dashboard import state
from dashboard.common import ROOT
from dashboard.jobs_ui import job_panel

NO_AGAINST = "__none__"


def start_audit_after_adding(ws: Workspace, dataset_id: str | None) -> None:
    """Audit a just-registered dataset in the background (pixels only: duplicates, leakage, properties)."""
    if dataset_id:
        try:
            start_audit(ws, dataset_id)
        except InputError:
            pass  # not registered after all: nothing to audit


def _state_or_start(ws: Workspace, dataset_id: str, against_id: str | None, key: str) -> dict | None:
    """The audit's report when cached; otherwise start it (pixels only) and show its progress. None meanwhile, or
    after it failed or was stopped (then with a button to run it again)."""
    state = audit_state(ws, dataset_id, against_id)
    if state["status"] == "missing":
        start_audit(ws, dataset_id, against_id)
        state = audit_state(ws, dataset_id, against_id)
    if state["status"] == "done":
        return state["report"]
    if job_panel(state["job"], key=f"{key}_job", failed="The audit failed.") in (FAILED, CANCELLED):
        if st.button("Run the audit again", key=f"{key}_restart", icon=":material/play_arrow:"):
            start_audit(ws, dataset_id, against_id)
            st.rerun()
    return None


# -- Test sets page ----------------------------------------------------------------------------------------
def _groups_table(groups: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame([{"group": i + 1, "images": len(g), "image ids": ", ".join(g)} for i, g in enumerate(groups)])


def _across_table(across: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"test image(s)": ", ".join(a["data"]), "training image(s)": ", ".join(a["against"])}
                         for a in across])


def _properties_table(props: dict) -> pd.DataFrame:
    rows = []
    for g in props["by_split_class"]:
        def median(name):
            return None if g[name] is None else round(g[name]["median"], 2)
        rows.append({"split": g["split"], "class": g["class"], "images": g["n"], "median width": median("width"),
                     "median height": median("height"), "median aspect": median("aspect"),
                     "mean grey level": median("intensity_mean"), "grey-level spread": median("intensity_std"),
                     "JPEG quality": median("jpeg_quality"),
                     "formats": ", ".join(f"{k} {v}" for k, v in g["file_format"].items()),
                     "channels": ", ".join(f"{k}: {v}" for k, v in g["channels"].items()),
                     "bit depth": ", ".join(f"{k}: {v}" for k, v in g["bit_depth"].items())})
    return pd.DataFrame(rows)


def _label_issues_view(issues: dict) -> None:
    st.text(f"Likely label errors to review (run {issues['run']}): {issues['n_flagged']}; {issues['note']}.")
    if issues["cases"]:
        st.dataframe(pd.DataFrame(issues["cases"]), hide_index=True, width="stretch")


def _shift_block(shift: dict) -> None:
    domain = shift["domain_classifier"]
    if shift["flagged"]:
        st.warning("This test set differs from the training data: numbers measured on it may not carry over.",
                   icon=":material/warning:")
        st.text("\n".join(f"- {r}" for r in shift["reasons"]))
    else:
        st.success("No shift from the training data found by these checks.", icon=":material/check_circle:")
    if domain.get("auc") is not None:
        st.caption(f"Domain classifier (train vs test on {domain.get('backbone', 'backbone')} features, "
                   f"{domain['folds']}-fold): AUC {domain['auc']:.3f}; about 0.5 means alike, flagged from "
                   f"{domain['threshold']:.2f}.")
    else:
        st.caption("Domain classifier not computed yet (run the full audit below).")
    st.dataframe(shift_tests_table(shift), hide_index=True, width="stretch")


def shift_tests_table(shift: dict) -> pd.DataFrame:
    """The per-property shift tests as shown: p-values as text ("< 0.001", never a row of zeros)."""
    return pd.DataFrame([{"property": t["property"], "test": t["test"], "statistic": round(t["statistic"], 4),
                          "p value": p_value_text(t["p_value"]), "flagged": t["flagged"]} for t in shift["tests"]])


def audit_report_view(report: dict, key: str) -> None:
    """Every part of a computed audit: counts, shift, duplicates, leakage, properties, label issues, the JSON."""
    exact, near, leak = report["exact_duplicates"], report["near_duplicates"], report["patient_leakage"]
    cols = st.columns(4)
    cols[0].metric("Exact duplicate groups", len(exact["groups"]),
                   help="Images with identical decoded pixels (" + exact["method"] + ").")
    cols[1].metric("Near-duplicate groups", len(near["groups"]), help=f"{near['method']}: {near['threshold_text']}.")
    cols[2].metric("Patients in several splits", len(leak["within"]) if leak["patient_ids_known"] else "no ids")
    if report["shift"] is not None:
        cols[3].metric("Shift from training", "flagged" if report["shift"]["flagged"] else "not flagged")
        _shift_block(report["shift"])
    if exact["groups"]:
        st.text(f"Exact duplicates ({exact['n_extra_copies']} extra copies):")
        st.dataframe(_groups_table(exact["groups"]), hide_index=True, width="stretch")
    if near["groups"]:
        st.text(f"Near duplicates ({near['threshold_text']}):")
        st.dataframe(_groups_table(near["groups"]), hide_index=True, width="stretch")
    for name, part in (("Exact", exact), ("Near", near)):
        if part["across"]:
            st.text(f"{name} copies of training images ({len(part['across'])} test images):")
            st.dataframe(_across_table(part["across"]), hide_index=True, width="stretch")
    if leak["within"]:
        st.text("Patients in more than one split:")
        st.dataframe(pd.DataFrame([{"patient": p["patient_id"], "splits": ", ".join(p["splits"])}
                                   for p in leak["within"]]), hide_index=True, width="stretch")
    if leak["across"]:
        st.text(f"Patients also in the training data: {len(leak['across'])}")
        st.dataframe(pd.DataFrame([{"patient": p["patient_id"], "test images": len(p["data"]),
                                    "training images": len(p["against"])} for p in leak["across"]]),
                     hide_index=True, width="stretch")
    st.text("Image properties per split and class:")
    st.dataframe(_properties_table(report["properties"]["data"]), hide_index=True, width="stretch")
    if report["label_issues"] is not None:
        _label_issues_view(report["label_issues"])
    st.download_button("Download the audit (JSON)", json.dumps(report, indent=1, default=str),
                       file_name="audit.json", mime="application/json", key=f"{key}_json",
                       icon=":material/download:")


def audit_section(ws: Workspace, record: dict, key: str) -> None:
    """The Audit section of a test set: against a chosen training dataset, started automatically, cached."""
    datasets = {d["id"]: d for d in ws.list_datasets(role="dataset")}
    run = ws.get_run(st.session_state.get(state.RUN_ID) or "") or {}
    options = [NO_AGAINST, *datasets]
    preferred = run.get("dataset_id") if run.get("dataset_id") in datasets else (options[1] if datasets else NO_AGAINST)
    against = st.selectbox("Compare with training data", options, index=options.index(preferred),
                           key=f"{key}_against",
                           format_func=lambda i: "nothing (this test set alone)" if i == NO_AGAINST
                           else datasets[i]["name"])
    against_id = None if against == NO_AGAINST else against
    st.caption("Checked on every decoded image: exact and near duplicates, patients in more than one split (or "
               "also in the training data), image properties, and whether the test set differs from the training "
               "data. Results are cached in the workspace.")
    report = _state_or_start(ws, record["id"], against_id, key)
    fuller = audit_state(ws, record["id"], against_id)["fuller"] if report is not None else None
    if fuller is not None and fuller.active:
        st.info("The full audit (a domain classifier on backbone features) is running; its result replaces the "
                "pixel checks below when it is done.", icon=":material/hourglass_top:")
    job_panel(fuller, key=f"{key}_full_job", failed="The full audit failed; the pixel checks below still stand.")
    if report is not None:
        audit_report_view(report, key)
    if (report is not None and report.get("options", {}).get("features") is False and against_id
            and (fuller is None or not fuller.active)):
        if st.button("Run the full audit (adds a domain classifier on backbone features)", key=f"{key}_full",
                     icon=":material/play_arrow:",
                     help="Embeds every image with the default backbone (cached, shared with training); on a CPU "
                          "about a minute or more per thousand images."):
            start_audit(ws, record["id"], against_id, options=FULL)
            st.rerun()
    label_issues_panel(ws, record, against_id, key)


def label_issues_panel(ws: Workspace, record: dict, against_id: str | None, key: str) -> None:
    """Likely mislabelled images from a trained run's backbone features, computed on request, for review."""
    runs = {r["id"]: r for r in ws.list_runs(status="succeeded")}
    with st.expander("Likely label errors (uses a trained run's backbone)", icon=":material/rule:"):
        if not runs:
            st.info("No trained run yet: train one on the **Train** page.", icon=":material/info:")
            return
        run_id = st.selectbox("Run", list(runs), key=f"{key}_issues_run",
                              format_func=lambda i: f"{runs[i]['name']} ({runs[i]['backbone']})")
        state = audit_state(ws, record["id"], against_id, run_id)
        if state["status"] == "done":
            _label_issues_view(state["report"]["label_issues"])
            return
        if job_panel(state["job"], key=f"{key}_issues_job", failed="Finding likely label errors failed.") == "running":
            return
        st.caption("Out-of-fold probabilities from the run's backbone features (cached), checked with cleanlab's "
                   "confident learning. Nothing is relabelled.")
        if st.button("Find likely label errors", key=f"{key}_issues_button", icon=":material/play_arrow:"):
            start_audit(ws, record["id"], against_id, run_id, options=FULL)
            st.rerun()


# -- Performance page --------------------------------------------------------------------------------------
def performance_audit_banner(ws: Workspace, selection: dict) -> dict | None:
    """Shift banner and duplicate count for the evaluated test set vs the run's training data; returns the audit
    report when there is one (for the duplicates-removed metrics)."""
    test_set = selection.test_set
    run = selection.run or {}
    if not test_set:
        return None
    against_id = run.get("dataset_id") if ws.get_dataset(run.get("dataset_id") or "") else None
    try:
        state = audit_state(ws, test_set["id"], against_id)
        if state["status"] == "missing":
            start_audit(ws, test_set["id"], against_id)
            state = audit_state(ws, test_set["id"], against_id)
    except InputError:
        return None
    if state["status"] == "running":
        st.caption("Auditing this test set against the run's training data in the background (duplicates, "
                   "shift); reload to see the result.")
        return None
    report = state["report"]
    if report is None:
        return None
    shift = report["shift"]
    if shift is not None and shift["flagged"]:
        st.warning("This test set looks different from the run's training data, so these numbers may not "
                   "describe how the model does on data like its training data.", icon=":material/warning:")
        st.text("\n".join(f"- {r}" for r in shift["reasons"]))
        st.page_link(str(ROOT / "pages" / "test_sets.py"), label="Open the audit on the Test sets page",
                     icon=":material/fact_check:")
    elif against_id is None:
        st.caption("The run's training data is not registered in this workspace, so shift is not checked.")
    return report


def duplicates_notice(ev, report: dict | None) -> None:
    """How many test images are exact copies of another, and the headline numbers with each counted once."""
    from core.infer.predictions import evaluation_arrays
    from core.metrics.dashboard import call_summary, view_scores
    from dashboard.evaluation import active_penalty
    from dashboard.evaluation_ui import interval_text

    if report is None or not report["exact_duplicates"]["groups"]:
        return
    exact = report["exact_duplicates"]
    frame = ev.selection.frame
    kept = without_duplicates(frame, exact)
    st.warning(f"{exact['n_extra_copies']:,} test images are exact copies of another test image "
               f"({len(exact['groups']):,} groups): copies count as extra cases and narrow every interval.",
               icon=":material/content_copy:")
    with st.expander("Headline numbers with each duplicate counted once", icon=":material/filter_alt:"):
        arrays = evaluation_arrays(kept, ev.task)
        mask = frame["image_id"].astype(str).isin(set(kept["image_id"].astype(str))).to_numpy()
        penalty = active_penalty(ev.ws, ev.task)
        codes = ev.arrays.patient_codes[mask] if ev.arrays.patient_codes is not None else None
        summary = call_summary(ev.arrays.truth[mask], np.asarray(ev.calls)[mask], ev.task.classes, penalty, codes,
                               probabilities=ev.arrays.probabilities[mask])
        scores = view_scores(arrays, ev.view)
        rates = scores.at_threshold(ev.point.threshold).metrics()
        rows = [("Images", f"{ev.arrays.n:,}", f"{int(mask.sum()):,}"),
                ("Accuracy", interval_text(ev.summary.accuracy), interval_text(summary.accuracy)),
                (f"Sensitivity ({ev.view.name})", interval_text(ev.rates.sensitivity), interval_text(rates.sensitivity)),
                (f"Specificity ({ev.view.name})", interval_text(ev.rates.specificity), interval_text(rates.specificity)),
                (f"AUC ({ev.view.name})", interval_text(ev.scores.auc(), percent=False),
                 interval_text(scores.auc(), percent=False)),
                ("Weighted error", interval_text(ev.summary.weighted_error, percent=False),
                 interval_text(summary.weighted_error, percent=False))]
        st.dataframe(pd.DataFrame(rows, columns=["measure", "all images", "duplicates removed"]), hide_index=True,
                     width="stretch")
        st.caption("Each group of identical images keeps its first image; the class calls and the operating "
                   "point are the page's.")


def cached_shift(ws: Workspace, test_set_id: str, report: dict) -> dict | None:
    """The cached dataset audit's shift verdict for this test set against the report's training data, or None
    (never runs an audit): what presentation mode says about shift."""
    try:
        audit = audit_state(ws, test_set_id, (report.get("model") or {}).get("training_dataset_id"))
    except (InputError, OSError):
        return None
    return (audit.get("report") or {}).get("shift") if audit.get("status") == "done" else None
