"""Test sets: add one (upload or server folder), preview it per class, and run a trained model on it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.infer.imported import is_imported_run
from core.infer.site_check import read_card
from core.store import Workspace
from dashboard import state
from dashboard.audit_ui import audit_section
from dashboard.access_ui import current_actor
from dashboard.common import ensure_demo_ui, get_workspace, run_choice_label, test_set_choice_label
from dashboard.lifecycle_ui import TEST_SET, manage_panel, restore_panel, show_lifecycle_message
from dashboard.paths_ui import shown_path
from dashboard.operating_ui import recalibration_panel, show_recalibration_result
from dashboard.site_ui import adaptation_notice, site_section
from dashboard.testsets_ui import add_data_form, dataset_preview, inference_panel, show_added_message
from dashboard.import_ui import import_scores_panel
from dashboard.widgets import show_error


INFER_TAB = "Run a model on it"


@st.cache_data(show_spinner=False, max_entries=32)
def labels_refused(root: str, run_id: str, test_set_id: str, fingerprint: str, card: dict) -> str | None:
    """Why the model cannot run on this test set, known before it runs (a label the model does not have), in the
    words of the rule inference applies (core.infer.predict), naming the test set, never its server path; None
    when it can run."""
    from core.data import Dataset
    from core.data.ingest import load_registered
    from core.data.tasks import task_from_dict
    from core.infer.predict import _align_to_model  # the one owner of the rule

    ws = Workspace.open(root)
    try:
        ds = load_registered(ws, test_set_id)
        task = task_from_dict(card.get("task") or {"classes": card.get("classes") or []}, source="the model card")
    except (InputError, OSError):  # not known before it runs: inference then says what it finds
        return None
    named = Dataset(ds.table, ds.task, f"test set {ws.get_dataset(test_set_id)['name']!r}", ds.problems, ds.root)
    try:
        _align_to_model(named, card, task)
    except InputError as exc:
        return str(exc)
    return None


st.title("Test sets")
st.caption("Images a trained model has never seen, with their true labels. Each test set is read once, "
           "checked, and registered in the workspace; a model's predictions on it are computed once and cached.")
ws = get_workspace()
ensure_demo_ui(ws)

with st.expander("Add a test set", expanded=False, icon=":material/add:"):
    added = add_data_form(ws, role="test_set", key="testsets_add")
    if added:
        st.session_state[state.TEST_SET_PREVIEW] = added
        st.rerun()
show_added_message()
show_lifecycle_message()

test_sets = ws.list_datasets(role="test_set")
restore_panel(ws, TEST_SET, key="testsets_restore")
if not test_sets:
    st.info("No test set to show: add one above." if TEST_SET.archived(ws) else "No test set yet: add one above.",
            icon=":material/info:")
    st.stop()
by_id = {t["id"]: t for t in test_sets}

st.subheader("Registered test sets")
table = pd.DataFrame([{"name": t["name"], "task": t["task"], "images": t["n_images"],
                       "synthetic": bool((t.get("meta") or {}).get("synthetic")),
                       "skipped on ingestion": (t.get("meta") or {}).get("n_problems", 0),
                       "source": shown_path(t["source"], current_actor()), "id": t["id"]} for t in test_sets])
st.dataframe(table, hide_index=True, width="stretch")

ids = list(by_id)
if st.session_state.get(state.TEST_SET_PREVIEW) not in ids:
    preferred = st.session_state.get(state.TEST_SET_ID)
    st.session_state[state.TEST_SET_PREVIEW] = preferred if preferred in ids else ids[0]
test_set_id = st.selectbox("Test set", ids, key=state.TEST_SET_PREVIEW,
                           format_func=lambda i: test_set_choice_label(by_id[i]))
record = by_id[test_set_id]
manage_panel(ws, TEST_SET, record, key="testsets_manage")

# Keyed and stateful: without a key each rerun ("Run inference", its end) reopened Preview and hid the progress.
tab_preview, tab_infer, tab_audit = st.tabs(["Preview", INFER_TAB, "Audit"], key="testsets_tab", on_change="rerun")
with tab_preview:
    dataset_preview(ws, record, key="testsets")
with tab_infer:
    runs = [r for r in ws.list_runs(status="succeeded") if not is_imported_run(r)]  # imported scores: no model
    if not runs:
        st.info("No trained model yet: train one on the **Train** page.", icon=":material/info:")
    else:
        run_by_id = {r["id"]: r for r in runs}
        preferred = st.session_state.get(state.RUN_ID)
        run_ids = list(run_by_id)
        run_id = st.selectbox(
            "Model (a finished training run)", run_ids, key="testsets_run",
            index=run_ids.index(preferred) if preferred in run_ids else 0,
            format_func=lambda i: f"{run_choice_label(run_by_id[i])}, task {run_by_id[i]['task']}")
        run = run_by_id[run_id]
        if run["task"] not in ("auto", record["task"]):
            st.warning("The model and the test set have different tasks: inference works only when every "
                       "test label is a class of the model.", icon=":material/warning:")
            st.text(f"Model's task: {run['task']}\nTest set's task: {record['task']}")
        try:
            card = read_card(ws, run_id)
        except InputError as exc:
            show_error("The run's model card cannot be read, so its operating point is not known.", exc)
            card = None
        inference_panel(ws, run_id, test_set_id, key="testsets",
                        blocked=labels_refused(str(ws.root), run_id, test_set_id, str(record.get("fingerprint")),
                                               card) if card else None)
        adaptation_notice(card, run)  # the calls of an adapted or recalibrated run say so
        predictions = ws.find_predictions(run_id, test_set_id)

        def recalibrate() -> None:
            result = recalibration_panel(ws, run_id, test_set_id, int(predictions["n_rows"]), key="testsets_recal")
            if result is not None:
                show_recalibration_result(result, key="testsets_recal")

        site_section(ws, run, test_set_id, key="testsets_site", run_key="testsets_run", card=card,
                     recalibrate=recalibrate)
with tab_audit:
    audit_section(ws, record, key="testsets_audit")
with st.expander("Import scores from elsewhere (CSV or parquet)", icon=":material/upload_file:"):
    import_scores_panel(ws, test_sets, key="testsets_import", default_id=test_set_id)
