"""Report: one model on one test set as a self-contained HTML file for stakeholders, plus the JSON of its numbers."""

from __future__ import annotations

import streamlit as st

from core.errors import InputError
from core.report import (SECTIONS, render_html, report_figures, report_json, report_name,
                         section_tables, write_report)
from core.metrics.intervals import informative_bounds
from core.infer.predictions import imported_provenance
from core.report.format import fmt
from core.report.pdf import chromium_path, render_pdf
from core.train.run_folder import run_model_card
from dashboard import state
from dashboard.common import get_workspace
from dashboard.evaluation import session_report
from dashboard.evaluation_ui import evaluation_or_stop, threshold_slider
from dashboard.widgets import plain

CONFIDENCE_LEVELS = (0.80, 0.90, 0.95, 0.99)
LR_METHOD_LABELS = {"log": "log (Simel 1991)", "koopman": "Koopman score (1984)",
                    "adjusted_log": "adjusted log (+0.5 per cell)"}


st.title("Report")
st.caption("Export one model on one test set for stakeholders: a single HTML file that opens offline in any browser "
           "(interactive figures, every number with its interval and method), and the JSON of all its numbers.")

ws = get_workspace()
selection = evaluation_or_stop(ws, key="report")
task = selection.task
single_label = task.kind != "multilabel"

with st.container(border=True):
    st.markdown("**Options**")
    row = st.columns(4)
    include_readers = row[0].toggle("Include readers", value=True, key="report_readers", disabled=not single_label,
                                    help="Readers' sensitivity, specificity, likelihood ratios and weighted error "
                                         "next to the model's, from the readings stored for this test set.")
    include_penalties = row[1].toggle("Include penalty analysis", value=True, key="report_penalties",
                                      disabled=not single_label,
                                      help="The penalty matrix in use and the weighted error of the most probable "
                                           "class against the penalty-minimising rule.")
    confidence = row[2].selectbox("Confidence level", CONFIDENCE_LEVELS, index=CONFIDENCE_LEVELS.index(0.95),
                                  format_func=lambda c: f"{c:.0%}", key="report_confidence")
    bootstrap = row[3].number_input("Bootstrap resamples", min_value=0, max_value=5000, value=200, step=100,
                                    key="report_bootstrap", help="Resampled by patient when the test set has "
                                                                 "patient ids; 0 = no bootstrap intervals.")
    row = st.columns(4)
    # The threshold in use (core.metrics.threshold_in_use): the user's when chosen, else the model's own point.
    try:
        card = run_model_card(selection.run)
    except InputError:
        card = None
    view = task.default_view() if single_label else None
    imported = imported_provenance(selection.meta) is not None  # scores from a file: no operating point came
    # Opens at the threshold in use; only a move is the user's threshold (recorded, followed by every page).
    in_use = threshold_slider("Threshold on the binary view's score", "report",
                              model_point=(card or {}).get("operating_point"), view_name=view.name if view else None,
                              imported=imported, container=row[0],
                              help="A case is positive when its score is at least this; it opens at the model's "
                                   "own operating point. Shared with the other pages.")
    threshold = in_use.value
    # Untouched (nobody chose a threshold): the report takes the model's point itself.
    moved = state.current_selection().threshold is not None
    seed = row[1].number_input("Bootstrap seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                               key="report_seed")
    lr_ci = row[2].selectbox("Likelihood-ratio interval", list(LR_METHOD_LABELS), format_func=LR_METHOD_LABELS.get,
                             key="report_lr_ci")
    title = row[3].text_input("Report title", value="Model evaluation report", max_chars=120, key="report_title")

try:
    report = session_report(ws, selection.run_id, selection.dataset_id, selection.file.mtime, task,
                            threshold if moved else None,
                            include_readers=include_readers, include_penalties=include_penalties,
                            bootstrap=bootstrap, seed=seed, confidence=confidence, lr_ci=lr_ci, title=title)
except InputError as exc:
    st.error("The report could not be built.", icon=":material/error:")
    st.code(str(exc), language=None, wrap_lines=True)
    st.stop()

name = report_name(report)
st.subheader("Download")
cols = st.columns([2, 2, 2, 2])
cols[0].download_button("HTML report", data=lambda: render_html(report).encode("utf-8"), file_name=f"{name}.html",
                        mime="text/html", key="report_html", type="primary", icon=":material/description:",
                        on_click="ignore", width="stretch")
cols[1].download_button("All numbers (JSON)", data=lambda: report_json(report).encode("utf-8"),
                        file_name=f"{name}.json", mime="application/json", key="report_json",
                        icon=":material/data_object:", on_click="ignore", width="stretch")
try:
    chromium_path()
    no_pdf = ""
except InputError as exc:
    no_pdf = str(exc)
cols[2].download_button("PDF report", data=(lambda: render_pdf(report)) if not no_pdf else b"",
                        file_name=f"{name}.pdf", mime="application/pdf", key="report_pdf",
                        icon=":material/picture_as_pdf:", on_click="ignore", width="stretch", disabled=bool(no_pdf),
                        help="The same report printed by Chromium: title page, page numbers, vector figures.")
if no_pdf:
    st.caption(plain(no_pdf))
if cols[3].button("Save a copy in the workspace", key="report_save", icon=":material/save:", width="stretch"):
    saved = write_report(ws, report)
    st.success("Saved the HTML report and its JSON in the workspace's reports folder:", icon=":material/check:")
    st.code(str(saved), language=None)
st.caption(f"Penalty matrix: {plain((report.get('penalty') or {}).get('name') or 'n/a')} (change it on the "
           "**Penalties** page). The HTML file "
           "embeds plotly.js (about 5 MB) so that it needs no network.")

st.subheader("Preview")
for notice in report.get("notices") or []:
    st.warning(plain(notice), icon=":material/science:")
headline = report.get("headline") or []
cards = st.columns(max(len(headline), 1))
for card, item in zip(cards, headline):
    card.metric(item["label"], fmt(item.get("value"), item["kind"]), help=plain(item.get("note") or ""))
    if item.get("low") is not None and item.get("high") is not None and informative_bounds(item["low"],
                                                                                            item["high"]):
        card.caption(f"{float(item.get('confidence') or confidence):.0%} CI {fmt(item['low'], item['kind'])} to "
                     f"{fmt(item['high'], item['kind'])} ({plain(item.get('method'))})")
    elif item.get("reason"):
        card.caption(plain(item["reason"]))

tables = section_tables(report)
figures: dict[str, list] = {}
for item in report_figures(report):
    figures.setdefault(item.section, []).append(item)
shown = [(anchor, heading) for anchor, heading in SECTIONS[1:]
         if tables.get(anchor) or figures.get(anchor) or anchor == "methods"]
for tab, (anchor, heading) in zip(st.tabs([heading for _, heading in shown]), shown):
    with tab:
        for item in figures.get(anchor, []):
            st.plotly_chart(item.figure, key=f"report_fig_{item.key}")
            st.caption(plain(item.caption))
        for table in tables.get(anchor, []):
            st.markdown(f"**{plain(table.title)}**")
            st.dataframe(table.to_frame(), hide_index=True, width="stretch", key=f"report_table_{table.key}")
            for line in ([table.note] if table.note else []) + table.footnote_lines():
                st.caption(plain(line))
        if anchor == "methods" and report["methods"].get("paste"):
            st.markdown("**Methods paragraph (ready to paste)**")
            st.code(report["methods"]["paste"], language=None, wrap_lines=True)
        if anchor == "methods":
            for paragraph in report["methods"]["paragraphs"]:
                st.markdown(plain(paragraph))
            st.markdown("**Limitations**")
            for line in report["methods"]["limitations"]:
                st.markdown(f"- {plain(line)}")
if include_readers and single_label and not (report.get("readers") or {}).get("included"):
    st.info(f"No reader comparison in this report: {plain((report.get('readers') or {}).get('reason', ''))}.",
            icon=":material/info:")
