"""UI blocks for data and inference: add an upload or server folder, preview a dataset, run a model in the background.

User text (file names, class names, error messages quoting them) is shown with st.text / st.code / st.dataframe,
never as HTML or markdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.data.ingest import UPLOAD_TYPES, ingest_upload, load_registered, register_folder
from core.data.tasks import list_tasks
from core.errors import SKIP_BAD_HINT, InputError
from core.jobs import DONE, Job, find_job, start_job
from core.store import Workspace
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.audit_ui import start_audit_after_adding
from dashboard.common import ROOT, registered_dataset, remember_selection, thumbnail
from dashboard.dicom_ui import dicom_options_ui
from dashboard.jobs_ui import job_panel
from dashboard.widgets import plain, show_error

AUTO_TASK = "auto"
# Okabe-Ito, one colour per split in the class-count chart.
SPLIT_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"]
SUBGROUP_PREVIEW_ROWS = 20  # images listed with their subgroup values
SUBGROUP_PREVIEW_VALUES = 8  # values named per subgroup column (the most frequent); the rest counted


# -- adding data -----------------------------------------------------------------------------------
def add_data_form(ws: Workspace, role: str, key: str) -> str | None:
    """Upload (zip / CSV / .npz) or server-folder registration. Returns the id added in this run, if any."""
    noun = "test set" if role == "test_set" else "dataset"
    col_task, col_name = st.columns(2)
    task = col_task.selectbox("Task (label schema)", [AUTO_TASK, *list_tasks()], key=f"{key}_task",
                              format_func=lambda t: "infer from the data" if t == AUTO_TASK else t,
                              help="'infer' recognises the Kermany OCT and chest X-ray layouts; other class "
                                   "folders or CSV labels become a custom task.")
    name = col_name.text_input(f"Name of the {noun} (optional)", key=f"{key}_name")
    skip_bad = st.checkbox("Skip unreadable images and unusable rows (they are listed) instead of refusing the "
                           "whole upload", key=f"{key}_skip_bad")
    dicom = dicom_options_ui(key)
    tab_upload, tab_folder = st.tabs(["Upload a file", "Register a server folder"])
    added = None
    with tab_upload:
        st.caption("A **zip** of class folders (`CLASS/image.jpeg`, optionally under `train/` and `test/`) or of "
                   "images with a CSV manifest (`path,label[,patient_id][,split]`); a **CSV manifest** on its own "
                   "only describes images, so it needs them in the same zip; or a **MedMNIST .npz**. Files are "
                   "stored in the workspace under generated names; nothing leaves this machine.")
        upload = st.file_uploader(f"File for the new {noun}", type=list(UPLOAD_TYPES), key=f"{key}_file")
        if st.button(f"Add {noun}", key=f"{key}_upload_button", disabled=upload is None, type="primary"):
            with st.spinner("Checking and registering the upload..."):
                added = _try(lambda: ingest_upload(ws, upload.name, upload, role=role, task=task, name=name or None,
                                                   skip_bad=skip_bad, dicom=dicom, actor=current_actor()), noun)
    with tab_folder:
        st.caption("A folder on the machine running this dashboard (read in place, nothing is copied).")
        folder = st.text_input("Folder path on the server", key=f"{key}_folder", placeholder="/data/OCT2017/test")
        if st.button(f"Register folder as a {noun}", key=f"{key}_folder_button", disabled=not folder.strip()):
            with st.spinner("Reading the folder..."):
                added = _try(lambda: register_folder(ws, folder, role=role, task=task, name=name or None,
                                                     skip_bad=skip_bad, dicom=dicom, actor=current_actor()),
                             noun)
    start_audit_after_adding(ws, added)
    return added


def _try(action, noun: str) -> str | None:
    try:
        result = action()
    except InputError as exc:
        show_error("Nothing was added: the data has problems (below). Fix them and try again.", str(exc))
        if SKIP_BAD_HINT in str(exc):
            st.caption("Or tick *Skip unreadable images and unusable rows* to add the rest; the skipped files are "
                       "then listed with the data.")
        return None
    st.session_state[state.DATA_ADDED] = {"id": result.dataset_id, "reused": result.reused, "noun": noun,
                                       "name": result.record["name"], "n": result.record["n_images"],
                                       "problems": result.record["meta"].get("n_problems", 0)}
    return result.dataset_id


def show_added_message() -> None:
    """The message of an upload added in the previous run (kept across the rerun that selects it)."""
    info = st.session_state.pop(state.DATA_ADDED, None)
    if not info:
        return
    verb = "was already registered" if info["reused"] else "added"
    st.success(f"The {info['noun']} {verb}: {info['n']} images"
               + (f", {info['problems']} skipped (listed below)" if info["problems"] else "") + ".",
               icon=":material/check_circle:")
    st.text(f"Name: {info['name']}\nId: {info['id']}")


# -- dataset preview -------------------------------------------------------------------------------
def _rows_per_class(ds, per_class: int) -> dict[str, list[int]]:
    table = ds.table
    out = {}
    for cls in ds.classes:
        mask = table[cls].astype(int) == 1 if ds.is_multilabel else table["label"] == cls
        out[cls] = np.flatnonzero(mask.to_numpy())[:per_class].tolist()
    return out


def dataset_preview(ws: Workspace, record: dict, key: str) -> None:
    """Class counts (table and chart), a thumbnail grid per class, and the problems found on ingestion."""
    try:
        ds = registered_dataset(ws, record)
    except InputError as exc:
        show_error("This dataset cannot be read any more (moved or changed since it was registered).", str(exc))
        return
    meta = record.get("meta") or {}
    if meta.get("synthetic"):
        st.info("Synthetic data (generated procedurally): no real patient is in it.", icon=":material/science:")
    counts = ds.class_counts()
    cols = st.columns(3)
    cols[0].metric("Images", f"{len(ds):,}")
    cols[1].metric("Classes", len(ds.classes))
    cols[2].metric("Patients", f"{len(ds.patients()):,}" if ds.patients() else "not given")
    st.text(f"Task: {ds.task.title} ({ds.task.kind}); classes: {', '.join(ds.classes)}")
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(counts.assign(total=counts.sum(axis=1)), width="stretch")
    with right:
        by_class = counts.T
        st.bar_chart(by_class, x_label="Class", y_label="Images", stack=True,
                     color=SPLIT_PALETTE[:by_class.shape[1]], height=220)
    subgroup_preview(ds)
    per_class = st.slider("Thumbnails per class", 1, 8, 4, key=f"{key}_per_class")
    for cls, rows in _rows_per_class(ds, per_class).items():
        st.text(f"{cls}: {int(counts[cls].sum()):,} images")
        if not rows:
            continue
        grid = st.columns(8)
        for slot, row in zip(grid, rows):
            try:
                slot.image(thumbnail(ws, record, ds.table["image_id"].iat[row], 128), width="stretch")
            except InputError:
                slot.text("unreadable")
    problems = meta.get("problems") or ds.problems
    if problems:
        total = meta.get("n_problems", len(problems))
        st.warning(f"{total} file(s) or row(s) were skipped on ingestion:", icon=":material/warning:")
        st.dataframe(pd.DataFrame({"problem": problems}), hide_index=True, width="stretch")


def subgroup_values_summary(ds) -> pd.DataFrame:
    """One row per subgroup column of the dataset: its most frequent values with their image counts, how many
    distinct values it has and how many images have none."""
    rows = []
    for column in ds.subgroup_columns():
        values = ds.table[column].where(ds.table[column].astype(str).str.strip() != "")
        counts = values.value_counts()
        shown = ", ".join(f"{value} ({count:,})" for value, count in counts.head(SUBGROUP_PREVIEW_VALUES).items())
        if len(counts) > SUBGROUP_PREVIEW_VALUES:
            shown += f", ... {len(counts) - SUBGROUP_PREVIEW_VALUES:,} more"
        rows.append({"column": column, "values (images)": shown, "distinct values": len(counts),
                     "images without a value": int(values.isna().sum())})
    return pd.DataFrame(rows)


def subgroup_preview(ds) -> None:
    """The dataset's subgroup columns (core.data.dataset.Dataset.subgroup_columns): a caption naming them, their
    values, and the first images with theirs. Nothing when it has none."""
    columns = ds.subgroup_columns()
    if not columns:
        st.caption("No subgroup columns: add columns such as sex, age, site or device to a manifest (or use DICOM "
                   "files) to break results down by them. Image properties from the audit are always available.")
        return
    st.caption(f"Subgroup columns ({len(columns)}): {', '.join(plain(c) for c in columns)}. Performance, Experts "
               "and Compare runs can break results down by each of them.")
    st.dataframe(subgroup_values_summary(ds), hide_index=True, width="stretch")
    st.dataframe(ds.table[["image_id", "label", *columns]].head(SUBGROUP_PREVIEW_ROWS), hide_index=True,
                 width="stretch")


# -- inference in the background ------------------------------------------------------------------
INFERENCE = "inference"  # its kind on the job board (core.jobs), keyed by run and test set


def _inference_key(run_id: str, test_set_id: str) -> str:
    return f"{run_id}|{test_set_id}"


def _inference_work(root: str, run_id: str, test_set_id: str):
    """predict() as a job's work (core.jobs): never touches st.*, so it can outlive the page that started it."""
    def work(progress) -> dict:
        from core.infer import predict

        progress(0.0, "Loading the model and the test set")
        ws = Workspace.open(root)
        ds = load_registered(ws, test_set_id)

        def batches(done: int, total: int) -> None:  # counted per image: the rate starts at the first batch
            progress(done / total if total else 1.0, f"Running the model: {done:,} / {total:,} images", done=done,
                     total=total)

        frame = predict(run_id, ds, workspace=ws, dataset_id=test_set_id, progress=batches)
        return {"rows": len(frame), "cached": bool(frame.attrs.get("cached"))}

    return work


def start_inference(ws: Workspace, run_id: str, test_set_id: str) -> Job:
    """Start (or return the running) background inference of run x test set."""
    return start_job(ws, INFERENCE, _inference_key(run_id, test_set_id),
                     _inference_work(str(ws.root), run_id, test_set_id), title="inference", unit="images")


def open_performance(run_id: str, test_set_id: str, key: str) -> None:
    if st.button("Open in Performance", key=f"{key}_open_perf", icon=":material/monitoring:"):
        remember_selection(run_id=run_id, test_set_id=test_set_id)
        st.switch_page(str(ROOT / "pages" / "performance.py"))


def inference_panel(ws: Workspace, run_id: str, test_set_id: str, key: str, blocked: str | None = None) -> None:
    """Run a model on a test set in the background with a progress bar; cached results are not recomputed.
    `blocked`: why it cannot run, known beforehand (the button is then disabled and says so)."""
    job = find_job(ws, INFERENCE, _inference_key(run_id, test_set_id))
    if job_panel(job, key=f"{key}_inference", failed="Inference failed.") == "running":
        return
    record = ws.find_predictions(run_id, test_set_id)
    if record is not None and Path(record["path"]).exists():
        fresh = job is not None and job.state == DONE and not job.result["cached"]
        st.success(("Predictions computed" if fresh else "Already computed")
                   + f": {record['n_rows']:,} images. Results are cached; nothing to recompute.",
                   icon=":material/check_circle:")
        open_performance(run_id, test_set_id, key)
        return
    if blocked:
        st.warning(f"This model cannot run on this test set: {plain(blocked)}", icon=":material/block:")
    if st.button("Run inference", key=f"{key}_run_inference", type="primary", icon=":material/play_arrow:",
                 disabled=bool(blocked)):
        start_inference(ws, run_id, test_set_id)
        st.rerun()
