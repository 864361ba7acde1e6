"""Train: configure and start a transfer-learning run, follow it live, list runs, and test a finished one."""

from __future__ import annotations

import streamlit as st

from core.data.demo import demo_status
from core.data.ingest import register_split
from core.errors import InputError
from core.infer.predictions import is_imported_run
from core.train import launch_run, read_events, reconcile_runs
from core.train.launcher import DuplicateRunError
from core.train.smoothing import DEFAULT_SMOOTHING
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.external_ui import import_model_form
from dashboard.common import ROOT, ensure_demo_ui, get_workspace, run_choice_label, test_set_choice_label
from dashboard.lifecycle_ui import RUN, manage_panel, restore_panel, show_lifecycle_message
from dashboard.testsets_ui import add_data_form, inference_panel, show_added_message
from dashboard.training_ui import (ACTIVE, LOGISTIC_NOTE, live_panel, logistic_head, new_run_form, run_summary,
                                   run_table, summary_table)
from dashboard.widgets import show_error

SELECTED = state.TRAIN_SELECTED_RUN

st.title("Train")
st.caption("Transfer learning as in Kermany et al. (Cell 2018): a backbone pretrained on ImageNet, a new head for "
           "the clinic's classes. Runs execute in their own process: they keep going when you leave this page "
           "or reload it.")
ws = get_workspace()
ensure_demo_ui(ws)
reconcile_runs(ws)

# -- new run ----------------------------------------------------------------------------------------
st.subheader("New run")
with st.expander("Add a training dataset (upload or server folder)", icon=":material/add:"):
    added = add_data_form(ws, role="dataset", key="train_add")
    if added:
        st.session_state[state.TRAIN_DATASET] = added
        st.rerun()
show_added_message()
with st.expander("Import a model trained elsewhere (ONNX or TorchScript)", icon=":material/upload_file:"):
    imported_run = import_model_form(ws, current_actor())
    if imported_run:
        st.session_state[SELECTED] = imported_run
        st.rerun()
config = new_run_form(ws)
if config is not None:
    try:
        run_id = launch_run(config, ws, actor=current_actor())
    except DuplicateRunError as exc:
        st.session_state[SELECTED] = exc.run_id  # the run already doing this, shown below
        show_error("Not started: this run is already on its way.", str(exc))
    except InputError as exc:
        show_error("The run could not start.", str(exc))
    else:
        st.session_state[SELECTED] = run_id
        st.session_state[state.TRAIN_STARTED] = run_id
        st.rerun()
if started := st.session_state.pop(state.TRAIN_STARTED, None):
    st.success("Run started in the background; follow it below.", icon=":material/rocket_launch:")
    st.text(f"Run id: {started}")

# -- runs ---------------------------------------------------------------------------------------------
st.subheader("Runs")
show_lifecycle_message()
# Scores imported from a file (core.infer.imported) have no model and no training: not in the run list, kept
# apart at the end of the page (renamed, archived or deleted there).
listed = ws.list_runs()
runs = [r for r in listed if not is_imported_run(r)]
imported_runs = [r for r in listed if is_imported_run(r)]


def imported_scores_panel() -> None:
    if not imported_runs:
        return
    st.subheader("Imported scores")
    st.caption(f"{len(imported_runs)} table(s) of scores imported from a file: no model was trained, so they are "
               "not in the run list. Evaluate them on the **Performance** page.")
    by_import = {r["id"]: r for r in imported_runs}
    chosen = st.selectbox("Imported scores", list(by_import), key="train_imported",
                          format_func=lambda i: run_choice_label(by_import[i]))
    manage_panel(ws, RUN, by_import[chosen], key="train_imported_manage")


restore_panel(ws, RUN, key="train_restore")
if not runs:
    st.info("No runs to show: start one above." if RUN.archived(ws) else "No runs yet: start one above.",
            icon=":material/info:")
    imported_scores_panel()
    st.stop()
st.dataframe(run_table(runs), hide_index=True, width="stretch",
             column_config={"best value": st.column_config.NumberColumn(format="%.4f")})
by_id = {r["id"]: r for r in runs}
ids = list(by_id)
if st.session_state.get(SELECTED) not in ids:
    active = [r["id"] for r in runs if r["status"] in ACTIVE]
    st.session_state[SELECTED] = (active or ids)[0]
# The status is in the table and the panel below, which follow it live: a status in the picker's label went stale
# ("queued" next to a table that said "running").
run_id = st.selectbox("Run", ids, key=SELECTED, format_func=lambda i: run_choice_label(by_id[i]))
run = by_id[run_id]
smoothing = DEFAULT_SMOOTHING
if not logistic_head(run):  # a logistic head has no step curves to smooth (its curve is cross-validated loss)
    smoothing = st.slider("Curve smoothing (TensorBoard-style; 0 = raw)", 0.0, 0.99, DEFAULT_SMOOTHING, 0.01,
                          key="train_smoothing")
live_panel(ws, run, smoothing, runs)

with st.expander("Configuration (config.json)"):
    st.json(run.get("config") or {}, expanded=False)

if run["status"] == "succeeded":
    summary = run_summary(read_events(run["run_dir"]))
    if summary:
        if logistic_head(run):
            st.caption(LOGISTIC_NOTE)
        else:
            st.caption(f"Best epoch {summary.get('best_epoch')} of {summary.get('epochs_run')}; checkpoint chosen "
                       f"on validation {summary.get('metric')}.")
        scores = summary_table(summary)
        if not scores.empty:
            st.dataframe(scores, hide_index=True, width="stretch")

    st.subheader("Test it")
    source = ws.get_dataset(run.get("dataset_id") or "")
    test_sets = ws.list_datasets(role="test_set")
    if source and "test" in ((source.get("meta") or {}).get("splits") or []) and not any(
            (t.get("meta") or {}).get("parent_dataset") == source["id"] for t in test_sets):
        if st.button("Register the training dataset's test split as a test set", key="train_register_split"):
            try:
                split_set = register_split(ws, source["id"], "test", actor=current_actor())
            except InputError as exc:
                show_error("Could not register the test split.", str(exc))
            else:
                st.session_state[state.train_test_set_key(run_id)] = split_set.dataset_id
                st.rerun()
    if not test_sets:
        st.info("No test set registered yet: add one on the Test sets page.", icon=":material/info:")
    else:
        same_task = [t for t in test_sets if t["task"] == run["task"]] or test_sets
        # The natural first choice: a test set derived from the training data (the demo's test split included).
        demo = demo_status(ws)
        same_task.sort(key=lambda t: not (((t.get("meta") or {}).get("parent_dataset") == run.get("dataset_id"))
                                          or (t["id"] == demo.get("test_set_id")
                                              and run.get("dataset_id") == demo.get("dataset_id"))))
        names = {t["id"]: t for t in test_sets}
        choices = [t["id"] for t in same_task] + [t["id"] for t in test_sets if t not in same_task]
        test_set_id = st.selectbox("Test set", choices, key=state.train_test_set_key(run_id),
                                   format_func=lambda i: test_set_choice_label(names[i]))
        inference_panel(ws, run_id, test_set_id, key="train")
    st.page_link(str(ROOT / "pages" / "test_sets.py"), label="Add or preview test sets",
                 icon=":material/folder_open:")

manage_panel(ws, RUN, run, key="train_manage",
             disabled_reason="Cancel the run (above) before you rename, archive or delete it."
             if run["status"] in ACTIVE else None)
imported_scores_panel()
