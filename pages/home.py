"""Home: what the product does, the workspace and its contents, and the way into the demo."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.store.access import allowed, open_workspace_as
from dashboard import state
from dashboard.access_ui import current_actor, users_admin
from dashboard.common import ROOT, ensure_demo_ui, get_workspace, workspace_root
from dashboard.demo_ui import demo_path, real_demo_form
from dashboard.paths_ui import shown_path, shown_paths
from dashboard.widgets import plain

st.image(str(ROOT / "assets" / "logo.svg"), width=260)
st.markdown(
    "**Train, test and question medical-image classifiers in the browser.** "
    "Start a transfer-learning run the way Kermany et al. (Cell 2018) did for retinal OCT and pediatric chest "
    "X-rays, then upload test sets and read the model's ROC curves, confusion matrices, weighted errors and "
    "likelihood ratios with their confidence intervals. Compare the model with expert readers (or grade images "
    "yourself), see where it looked with occlusion and Grad-CAM maps, and export a report."
)

ws = get_workspace()
demo = ensure_demo_ui(ws)

datasets = ws.list_datasets(role="dataset")
test_sets = ws.list_datasets(role="test_set")
runs = ws.list_runs()
predictions = ws.list_predictions()

cols = st.columns(4)
cols[0].metric("Datasets", len(datasets))
cols[1].metric("Test sets", len(test_sets))
cols[2].metric("Training runs", len(runs))
cols[3].metric("Evaluated (run x test set)", len(predictions))

st.subheader("Built-in demo")
st.info(
    "The demo data is **synthetic**: procedurally generated OCT B-scans (CNV, DME, DRUSEN, NORMAL) in the "
    "Kermany file layout. No real patient is in it. It exists so every page works straight after install.",
    icon=":material/science:",
)
if demo.get("registered"):
    demo_row = next((d for d in datasets if d["id"] == demo.get("dataset_id")), None)
    if demo_row:
        params = demo_row["meta"].get("demo", {})
        st.caption(
            f"{demo_row['n_images']} training and "
            f"{next((t['n_images'] for t in test_sets if t['id'] == demo.get('test_set_id')), 0)} test images, "
            f"{params.get('size', '?')} px, seed {params.get('seed', '?')}. "
            f"Folder: {plain(shown_path(demo['path'], current_actor()))}"
        )
st.markdown(
    "**Try the demo** in three steps:\n"
    "1. Train a model on the demo data (frozen EfficientNet-Lite0 with ImageNet weights, cached features: "
    "a few minutes on a laptop CPU).\n"
    "2. Run it on the demo's test split.\n"
    "3. Read its performance, adjust the penalty matrix, compare it with simulated expert readers, and look "
    "at the saliency maps of its mistakes."
)

if demo.get("registered"):
    demo_path(ws, demo)
if allowed(current_actor(), "register_server_folder"):
    with st.expander("A real demo instead: from a MedMNIST .npz on this server", icon=":material/biotech:"):
        real_demo_form(ws)


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "source" in frame.columns:  # server paths: the folder's name only, except for an admin
        frame["source"] = shown_paths(frame["source"], current_actor())
    return frame[[c for c in columns if c in frame.columns]] if not frame.empty else pd.DataFrame(columns=columns)


st.subheader("Workspace")
st.caption("Everything the product writes (uploads, runs, caches, predictions, reader studies) stays in this folder.")
st.code(shown_path(ws.root, current_actor()), language=None)
if allowed(current_actor(), "choose_workspace"):
    with st.expander("Use another workspace folder (admin)"):
        new_root = st.text_input("Workspace folder", value=workspace_root(), key="workspace_input")
        if st.button("Open workspace", key="open_workspace"):
            try:
                chosen = open_workspace_as(new_root, actor=current_actor())
                st.session_state[state.WORKSPACE_ROOT] = str(chosen.root)
                for key in (*state.SELECTION_KEYS, state.SELECTION_RESTORED):
                    st.session_state.pop(key, None)
                st.rerun()
            except (InputError, OSError) as exc:
                st.error(f"Cannot open that workspace: {plain(exc)}")
users_admin(ws, current_actor())

tab_data, tab_tests, tab_runs = st.tabs(["Datasets", "Test sets", "Runs"])
with tab_data:
    st.dataframe(_table(datasets, ["name", "task", "n_images", "source", "id"]), hide_index=True,
                 width="stretch")
with tab_tests:
    st.dataframe(_table(test_sets, ["name", "task", "n_images", "source", "id"]), hide_index=True,
                 width="stretch")
with tab_runs:
    st.dataframe(_table(runs, ["name", "status", "task", "backbone", "mode", "best_metric_name", "best_metric",
                               "id"]), hide_index=True, width="stretch")
