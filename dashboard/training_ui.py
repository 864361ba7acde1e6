"""UI blocks of the Train page: the new-run form, the run table, and a run's live panel (polled while it runs)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.data.demo import demo_status
from core.data.ingest import registered_task
from core.data.tasks import get_task, list_tasks
from core.plots.training import cv_curve_figure, training_curves_figure
from core.store import Workspace
from core.train import cancel_run, read_events, reconcile_runs
from core.metrics.model_operating_point import DEFAULT_TARGET_SENSITIVITY, OPERATING_RULES
from core.models.preprocess import DEFAULT_FRAMING, FRAMINGS
from core.train.config import BALANCE, HEAD_FITS, HEADS, MAX_VIEWS, VAL_METRICS, RunConfig, default_backbone
from core.train.monitor import cv_curve, run_progress, training_curves
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.widgets import show_error, sticky_select


ACTIVE = ("queued", "running")
FROM_DATASET = "dataset"
POLL_SECONDS = 2.0
MODE_LABELS = {"features": "Cached features: frozen backbone, new head (Kermany et al.'s method; fast)",
               "finetune": "Fine-tune: train the backbone's last stages too (slower; GPU advised)"}
BALANCE_LABELS = {"none": "None", "weights": "Class-weighted loss (inverse frequency)",
                  "sampler": "Balanced sampler (each class drawn equally often)"}
HEAD_FIT_LABELS = {"logistic": "Logistic regression, strength by patient-grouped cross-validation, all images "
                               "(default)",
                   "adam": "Adam epochs with a 20% patient validation split"}
RULE_LABELS = {"youden": "Balanced (Youden's J on out-of-fold predictions)",
               "sensitivity": "Screening: a target sensitivity", "argmax": "Most probable class (no threshold)"}
LOGISTIC_NOTE = ("Logistic head: fitted in one solve on every training image, its strength chosen by "
                 "patient-grouped cross-validation; no epochs or learning rate.")
LIMIT_LABELS = {"all": "All training images", "per_class": "N images per class", "fraction": "A fraction of each class"}


@st.cache_resource(show_spinner=False)
def device_options():
    from core.train.devices import device_options as probe  # imports torch once per server process

    return probe()


def _backbone_label(spec) -> str:
    if spec.test_model:
        return f"{spec.name} - tiny test model (random init, smoke tests only)"
    if spec.offline_weights:
        return f"{spec.name} - offline ImageNet weights"
    return f"{spec.name} - hub weights if online, else random init"


def _default_index(options: list, preferred) -> int:
    return options.index(preferred) if preferred in options else 0


def new_run_form(ws: Workspace) -> dict | None:
    """Widgets for a run's recipe. Returns the config for launch_run when Start is clicked, else None."""
    datasets = ws.list_datasets(role="dataset")
    if not datasets:
        st.info("No training dataset registered yet: add one below.", icon=":material/info:")
        return None
    by_id = {d["id"]: d for d in datasets}
    ids = list(by_id)
    dataset_id = sticky_select("Training data", ids, state.TRAIN_DATASET,
                               default=ids[_default_index(ids, demo_status(ws).get("dataset_id"))],
                               format_func=lambda i: f"{by_id[i]['name']} ({by_id[i]['n_images']:,} images)")
    record = by_id[dataset_id]
    meta = record.get("meta") or {}
    if meta.get("synthetic"):
        st.caption("Synthetic demo data (procedurally generated OCT B-scans, no real patients).")
    blocked = bool(meta.get("skip_bad") and meta.get("n_problems"))
    if blocked:
        st.warning(f"{meta['n_problems']} unreadable file(s) were skipped when this dataset was registered; "
                   "training reads the folder strictly and would stop on them. Remove or fix those files and "
                   "register the folder again.", icon=":material/warning:")

    with st.spinner("Loading the backbone registry (PyTorch and timm, first visit only)..."):
        # Imported here, not at the top: the page's header renders while torch loads on a first visit.
        from core.models.registry import list_backbones

        devices = device_options()
    col1, col2 = st.columns(2)
    own_task = registered_task(record)
    # Keyed per dataset: one key for all kept the previous dataset's preset after the dataset changed.
    task_name = col1.selectbox("Task preset", [FROM_DATASET, *list_tasks()], key=task_preset_key(dataset_id),
                               format_func=lambda t: f"as registered ({own_task.name})" if t == FROM_DATASET else t)
    task = own_task if task_name == FROM_DATASET else get_task(task_name)
    mode = col1.radio("Mode", list(MODE_LABELS), key="train_mode", format_func=MODE_LABELS.get)
    specs = {s.name: s for s in list_backbones() if mode == "features" or not s.members}
    names = list(specs)
    backbone = col2.selectbox("Backbone", names, key=f"train_backbone_{mode}",
                              index=_default_index(names, default_backbone(mode)),
                              format_func=lambda n: _backbone_label(specs[n]))
    spec = specs[backbone]
    col2.caption(spec.description)
    framings = list(FRAMINGS)
    framing = col2.selectbox("Image framing", framings, key="train_framing",
                             index=_default_index(framings, DEFAULT_FRAMING),
                             format_func=lambda f: f"{f}: {FRAMINGS[f]}",
                             help="The same framing is used for training, inference and the explanation maps. "
                                  "Whole-image framings keep the lateral lung fields and the edges of wide scans.")
    head_fit = "adam"
    if mode == "features":
        head_fit = col1.selectbox("Head fitting", list(HEAD_FITS), key="train_head_fit",
                                  format_func=HEAD_FIT_LABELS.get)
    defaults = RunConfig(mode=mode, head_fit=head_fit)
    views = 0
    if mode == "features":
        views = int(col2.number_input(
            "Acquisition views per training image", 0, MAX_VIEWS, defaults.views, key="train_views",
            help="Extra copies of each training image as another site's export pipeline might deliver it "
                 "(resampled, JPEG re-encoded, contrast changed); their features are cached, so the head learns "
                 "invariance to those shifts. Each view costs one more pass of the backbone, the first time only."))
    rules = list(OPERATING_RULES)
    rule = col1.selectbox("Operating point", rules, key="train_operating_rule", format_func=RULE_LABELS.get,
                          help="Chosen without test data and stored with the model; it decides the model's "
                               "'predicted' class. " + " ".join(f"{k}: {v}." for k, v in OPERATING_RULES.items()))
    target = None
    if rule == "sensitivity":
        target = float(col1.slider("Target sensitivity", 0.5, 0.999, DEFAULT_TARGET_SENSITIVITY, 0.005,
                                   key="train_target_sensitivity"))

    col1, col2, col3 = st.columns(3)
    limit = col1.radio("Limited data", list(LIMIT_LABELS), key="train_limit", format_func=LIMIT_LABELS.get,
                       help="The paper's 'limited model' used 1,000 images per class.")
    per_class = fraction = None
    if limit == "per_class":
        per_class = int(col1.number_input("Images per class", 1, 1_000_000, 1000, key="train_per_class"))
    elif limit == "fraction":
        fraction = float(col1.slider("Fraction of each class", 0.01, 1.0, 0.1, 0.01, key="train_fraction"))
    balance = col2.selectbox("Class balancing", list(BALANCE), key="train_balance", format_func=BALANCE_LABELS.get)
    device = col3.selectbox("Device", list(devices.choices), key="train_device")
    col3.caption(devices.explanation)

    col1, col2, col3 = st.columns(3)
    # Keys per mode / backbone: switching them shows that choice's own defaults.
    # The logistic head is fitted in one exact solve: epochs and a learning rate do not apply, so they are not shown
    # (greyed-out "30" and "1e-03" read as if they did).
    iterative = head_fit == "adam"
    epochs, lr = defaults.epochs, defaults.lr
    if iterative:
        epochs = int(col1.number_input("Epochs", 1, 1000, defaults.epochs, key=f"train_epochs_{mode}"))
        lr = float(col2.number_input("Learning rate", 1e-6, 1.0, defaults.lr, format="%.0e", step=1e-4,
                                     key=f"train_lr_{mode}"))
    else:
        col1.caption(LOGISTIC_NOTE)
    size = int(col3.number_input("Image size (pixels)", 32, 1024, spec.default_size, 16,
                                 key=f"train_size_{backbone}",
                                 help=f"{spec.name} was trained at {spec.default_size} px"))

    with st.expander("More settings"):
        col1, col2, col3 = st.columns(3)
        batch_size = int(col1.number_input("Batch size", 1, 4096, defaults.batch_size, key=f"train_batch_{mode}"))
        head = col2.selectbox("Head", list(HEADS), key="train_head",
                              help="The logistic fit needs the linear head; an MLP head is fitted with Adam.")
        seed = int(col3.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed"))
        val_metric = col1.selectbox("Checkpoint chosen on validation", list(VAL_METRICS), key="train_val_metric")
        binary_views = [None, *[v.name for v in task.binary_views]]
        binary = col2.selectbox("One-vs-rest (binary) model", binary_views, key="train_binary",
                                format_func=lambda v: "no: all classes" if v is None else v)
        pretrained = col3.checkbox("Start from pretrained weights", True, key="train_pretrained",
                                   disabled=spec.test_model)
        run_name = st.text_input("Run name (optional)", key="train_name")

    if not st.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:",
                     disabled=blocked):
        return None
    return {"data": record["source"], "dataset_id": dataset_id, "task": task.to_dict(), "name": run_name.strip(),
            "backbone": backbone, "pretrained": bool(pretrained and not spec.test_model), "mode": mode, "head": head,
            "image_size": None if size == spec.default_size else size, "lr": lr, "epochs": epochs,
            "batch_size": batch_size, "balance": balance, "per_class": per_class, "fraction": fraction,
            "device": device, "seed": seed, "val_metric": val_metric, "binary": binary, "framing": framing,
            "head_fit": head_fit if head == "linear" else "adam", "views": views, "operating_rule": rule,
            "target_sensitivity": target}


def task_preset_key(dataset_id: str) -> str:
    """The Task preset picker's widget key for one training dataset (each dataset starts at its own task)."""
    return f"train_task_{dataset_id}"


def logistic_head(run: dict) -> bool:
    """Whether a run's head was fitted by logistic regression (one solve: no epochs, steps or training curves)."""
    config = run.get("config") or {}
    return run.get("mode") == "features" and config.get("head_fit") == "logistic"


def _duration(run: dict) -> str:
    if not run.get("started"):
        return ""
    seconds = (run.get("finished") or time.time()) - run["started"]
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        rows.append({
            "name": r["name"], "status": r["status"], "backbone": r["backbone"], "mode": r["mode"],
            "task": r["task"], "epochs": None if logistic_head(r) else cfg.get("epochs"),
            "lr": None if logistic_head(r) else cfg.get("lr"),
            "data limit": (f"{cfg['per_class']}/class" if cfg.get("per_class") else
                           f"{cfg['fraction']:.0%}" if cfg.get("fraction") else "all"),
            "best metric": r.get("best_metric_name"), "best value": r.get("best_metric"),
            "created": pd.Timestamp(r["created"], unit="s").floor("s"), "duration": _duration(r),
            "error": (r.get("error") or "").split("\n")[0][:200], "id": r["id"]})
    return pd.DataFrame(rows)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _progress_text(progress, status: str) -> str:
    if status == "queued":
        return "Queued: the run process is starting or waiting for a free device slot"
    if progress.phase == "extracting features" and progress.total:
        return f"Extracting features (cached for later runs): {progress.done:,} / {progress.total:,} images"
    if progress.phase == "fitting the head" and progress.total:
        if progress.done >= progress.total:
            return (f"Fitting the head: cross-validation done ({progress.total} folds); final fit on every "
                    "training image")
        return (f"Fitting the head: fold {progress.done} of {progress.total} of patient-grouped cross-validation, "
                "then the final fit")
    if progress.phase == "fitting the head":
        return "Fitting the head: logistic regression, strength chosen by patient-grouped cross-validation"
    if progress.phase == "training" and progress.total:
        return f"Training: step {progress.done:,} / {progress.total:,} (epoch {progress.epoch})"
    if progress.phase == "finished":
        return f"Finished: {status}"
    if progress.message:
        return f"Starting: {progress.message}"
    return "Starting: the run process is loading PyTorch"


def changed_statuses(ws: Workspace, shown: dict[str, str]) -> dict[str, str]:
    """Runs whose status is no longer the one the page shows ({run id: status now}; a removed run: 'gone')."""
    if not shown:
        return {}
    reconcile_runs(ws)  # a dead process shows up as failed, with the reason
    now = {r["id"]: r["status"] for r in ws.list_runs(include_archived=True)}
    return {run_id: now.get(run_id, "gone") for run_id, status in shown.items() if now.get(run_id) != status}


def _panel_body(ws: Workspace, run_id: str, smoothing: float, shown: dict[str, str]) -> None:
    if changed_statuses(ws, shown):
        # Any run queued -> running -> finished: refresh the whole page (run table, Run selector, post-run
        # options), not only this panel; polling stops once no run is active.
        st.rerun(scope="app")
    run = ws.get_run(run_id)
    if run is None:
        st.warning("This run is no longer in the registry.")
        return
    status = run["status"]
    events = read_events(run["run_dir"])
    progress = run_progress(events, status)
    st.progress(progress.fraction or 0.0, text=_progress_text(progress, status))
    cols = st.columns(5)
    cols[0].metric("Status", status)
    cols[1].metric("Images / s", f"{progress.images_per_s:,.0f}" if progress.images_per_s else "-")
    cols[2].metric("Time left (ETA)", _fmt_seconds(progress.eta_s) if status in ACTIVE else "-")
    val = progress.latest_val or {}
    cols[3].metric("Validation accuracy", f"{val['accuracy']:.3f}" if val.get("accuracy") is not None else "-")
    best = run.get("best_metric")
    cols[4].metric(f"Best {run.get('best_metric_name') or 'metric'}", f"{best:.4f}" if best is not None else "-")
    if progress.message and status in ACTIVE:
        st.text(progress.message)
    curves, cv = training_curves(events, smoothing), cv_curve(events)
    if not curves.empty:
        st.plotly_chart(training_curves_figure(curves, smoothing), key=f"train_curves_{run_id}", width="stretch")
    elif not cv.empty:
        # The logistic head has no steps: its curve is held-out log loss by strength, filled in fold by fold.
        st.plotly_chart(cv_curve_figure(cv), key=f"train_cv_{run_id}", width="stretch")
    elif logistic_head(run):
        st.caption("The cross-validation curve appears after the first fold of the head's fit.")
    else:
        st.caption("Curves appear after the first training steps.")
    if status in ACTIVE:
        if st.button("Cancel run", key=f"train_cancel_{run_id}", icon=":material/stop_circle:"):
            outcome = cancel_run(run_id, ws, actor=current_actor())
            st.info("Cancelling: the run finishes its current step and saves." if outcome == "cancelling"
                    else f"Run {outcome}.", icon=":material/info:")
    elif status == "failed":
        show_error("The run failed. Its error:", run.get("error") or "no error recorded")


def live_panel(ws: Workspace, run: dict, smoothing: float, runs: list[dict]) -> None:
    """A run's status, progress bar with ETA, images/s and curves; polled every 2 s while any run of the page's
    `runs` is active, so the whole page follows every status change, not only the selected run's."""
    shown = {r["id"]: r["status"] for r in runs if r["status"] in ACTIVE}

    @st.fragment(run_every=POLL_SECONDS if shown else None)
    def panel():
        _panel_body(ws, run["id"], smoothing, shown)

    panel()


def run_summary(events: list[dict]) -> dict | None:
    """The final summary record the trainer writes (best epoch, validation and test scores)."""
    return next((e for e in reversed(events) if e.get("type") == "summary"), None)


def summary_table(summary: dict) -> pd.DataFrame:
    rows = []
    for split, label in (("val", "validation (best checkpoint)"), ("test", "dataset's test split")):
        scores = summary.get(split) or {}
        if scores:
            rows.append({"split": label, **{k: scores.get(k) for k in ("n", "loss", "accuracy", "auroc", "kappa")}})
    return pd.DataFrame(rows)
