"""Explain page building blocks: the cached model and images, filter and map-setting widgets, overlays, and the
background job that computes a gallery's maps off the script thread (polled with st.fragment)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.explain import MapCache, colorbar, get_explainer, shared_scale
from core.explain.case_images import CaseImages
from core.explain.case_maps import Case, cached_maps, case_map, explain_cases
from core.explain.colormaps import COLORMAPS
from core.explain.explain_model import ExplainModel
from core.explain.overlay import overlay
from core.explain.registry import list_explainers
from core.explain.gallery import DISAGREEMENTS, OUTCOMES, CaseFilter, has_readings
from core.models import find_checkpoint
from core.store import Workspace
from dashboard import state
from dashboard.common import registered_dataset
from dashboard.widgets import plain, show_error, sticky_select


METHODS = {explainer.name: explainer.title for explainer in list_explainers()}  # name -> title, in UI order
MAX_JOB_CASES = 2000
FINISHED_JOBS_KEPT_S = 3600


# -- cached model, images, maps ----------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _load_model(checkpoint: str, mtime: float, run_id: str) -> ExplainModel:
    return ExplainModel.load(checkpoint, run_id=run_id, device="auto")


def model_for_run(ws: Workspace, run_id: str) -> ExplainModel:
    """The run's model, loaded once per checkpoint file (st.cache_resource) and shared by every session."""
    path = find_checkpoint(ws.runs_dir / run_id)
    return _load_model(str(path), path.stat().st_mtime, run_id)


def images_for(ws: Workspace, test_set: dict) -> CaseImages:
    """The test set's images by id (the shared registered dataset) with its lesion boxes."""
    return CaseImages(registered_dataset(ws, test_set), test_set.get("source"))


@st.cache_resource(show_spinner="Reading the cached maps...", max_entries=8)
def _gallery_maps(model_id: str, cases: tuple, method: str, params_json: str, generation: int, cache_root: str,
                  _model: ExplainModel, _images: CaseImages) -> dict:
    return cached_maps(_model, _images, list(cases), method, json.loads(params_json), MapCache(cache_root))


def gallery_maps(model: ExplainModel, images: CaseImages, cases: Sequence[Case], method: str, params: dict,
                 cache: MapCache) -> dict:
    """The maps of these cases already on disk (read once per generation of the cache; treat as read-only)."""
    return _gallery_maps(model.model_id, tuple(cases), method, json.dumps(params, sort_keys=True), generation(),
                         str(cache.root), model, images)


@st.cache_data(show_spinner=False, max_entries=16)
def _default_boxes(path: str, mtime: float, test_set_id: str, fingerprint: str, _images: CaseImages):
    return _images.boxes(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _uploaded_boxes(data: bytes, name: str, test_set_id: str, fingerprint: str, _images: CaseImages):
    return _images.boxes(io.BytesIO(data), name=name)


def boxes_ui(images: CaseImages, test_set: dict) -> tuple[dict, str | None]:
    """Lesion boxes per image_id: an uploaded CSV, else the lesions.csv beside the test set (the demo has one)."""
    upload = st.file_uploader("CSV of lesion boxes (optional)", type=["csv"], key="explain_boxes_upload",
                              help="Columns image_id or path, and x0, y0, x1, y1 in original-image pixels "
                                   "(inclusive). Boxes are drawn on the images and score the maps.")
    key = (test_set["id"], str(test_set.get("fingerprint")))
    try:
        if upload is not None:
            boxes, problems = _uploaded_boxes(upload.getvalue(), upload.name, *key, images)
            source = f"uploaded file {upload.name}"
        else:
            path = images.lesions_csv()
            if path is None:
                st.caption("No lesion boxes for this test set: upload a CSV to score the maps.")
                return {}, None
            boxes, problems = _default_boxes(str(path), path.stat().st_mtime, *key, images)
            source = f"{path.name} beside the test set"
    except InputError as exc:
        show_error("The boxes CSV was not used:", exc)
        return {}, None
    st.caption(f"Lesion boxes from the {plain(source)}: {len(boxes):,} images of this test set have boxes"
               + (f"; {len(problems):,} box rows are for images outside it." if problems else "."))
    return boxes, source


# -- widgets -----------------------------------------------------------------------------------------------
def cell_was_clicked(cell: dict, classes: Sequence[str], clicked) -> bool:
    """Whether `cell` (state.CONFUSION_CELL) is the cell the user clicked on Performance (state.CELL_APPLIED, the
    (true, called) indices of the last click), not the cell Performance shows by default (its largest error)."""
    try:
        return tuple(clicked or ()) == (list(classes).index(cell["true"]), list(classes).index(cell["called"]))
    except (KeyError, ValueError):
        return False


def row_click_case(picked: Sequence[int], ids: Sequence[str], applied: str | None) -> str | None:
    """The case a click on the gallery table chose, when it is not the one already applied to the case picker;
    else None. Compared by case, not row number: after a filter change row 2 is another case, and comparing rows
    left the picker on the old gallery's case while the table highlighted the new one."""
    if not picked or not 0 <= picked[0] < len(ids):
        return None
    case = str(ids[picked[0]])
    return None if case == applied else case


def filters_ui(cases: pd.DataFrame, classes: Sequence[str], cell: dict | None, clicked=None) -> CaseFilter:
    """Which cases the gallery shows: misclassified by default; a confusion-matrix cell from the Performance page
    when one was chosen for this model and test set (the filter starts from it when it was clicked there:
    `clicked` is state.CELL_APPLIED); true / called class, confidence and reader filters."""
    use_cell = False
    if cell:
        ids = cell.get("image_ids") or []
        use_cell = st.toggle(
            f"Only the confusion-matrix cell chosen on Performance: true {plain(cell['true'])}, called "
            f"{plain(cell['called'])} ({len(ids)}{'+' if len(ids) >= 200 else ''} cases)", key="explain_use_cell",
            value=cell_was_clicked(cell, classes, clicked))
    cols = st.columns([2, 2, 2, 3])
    outcome = cols[0].radio("Cases", list(OUTCOMES), format_func=OUTCOMES.get, key="explain_outcome",
                            disabled=use_cell, horizontal=False)
    true_classes = cols[1].multiselect("True class", list(classes), key="explain_true", disabled=use_cell,
                                       placeholder="every class")
    called = cols[2].multiselect("Called class", list(classes), key="explain_called", disabled=use_cell,
                                 placeholder="every class")
    confidence = cols[3].slider("Model confidence (probability of its call)", 0.0, 1.0, (0.0, 1.0), 0.01,
                                key="explain_confidence")
    disagreement = "any"
    if has_readings(cases):
        disagreement = cols[3].selectbox("Readers", list(DISAGREEMENTS), format_func=DISAGREEMENTS.get,
                                         key="explain_readers")
    if use_cell:
        return CaseFilter(outcome="all", confidence=tuple(confidence), disagreement=disagreement,
                          image_ids=tuple(str(i) for i in cell.get("image_ids") or []))
    if outcome == "misclassified" and bool(cases["correct"].all()) and len(cases):
        st.info("The model gets every case of this test set right: there is nothing misclassified, so the gallery "
                "shows all cases.", icon=":material/info:")
        outcome = "all"
    return CaseFilter(outcome=outcome, true_classes=tuple(true_classes), predicted_classes=tuple(called),
                      confidence=tuple(confidence), disagreement=disagreement)


def method_params_ui(method: str, input_hw: tuple[int, int], container=None) -> dict:
    """Widgets for a method's parameters, built from its ParamSpecs; empty optional fields keep the default."""
    box = container or st
    params = {}
    for spec in get_explainer(method).params:
        if spec.hidden:
            continue
        key = f"explain_{method}_{spec.name}"
        if spec.kind in ("int", "float"):
            cast = int if spec.kind == "int" else float
            top = min(input_hw) if spec.within_input else None
            value = box.number_input(
                spec.label, min_value=cast(spec.minimum) if spec.minimum is not None else None, max_value=top,
                value=cast(min(spec.default, top or spec.default)) if spec.default is not None else None,
                step=1 if spec.kind == "int" else 0.1, key=key, help=spec.help,
                placeholder="default" if spec.default is None else None)
            params[spec.name] = cast(value) if value is not None else None
        elif spec.kind == "choice":
            params[spec.name] = box.selectbox(spec.label, list(spec.choices), key=key, help=spec.help,
                                              index=list(spec.choices).index(spec.default))
        elif spec.kind == "bool":
            params[spec.name] = box.checkbox(spec.label, value=bool(spec.default), key=key,
                                             help=spec.help)
        else:
            text = box.text_input(spec.label, key=key, help=spec.help, placeholder="default")
            params[spec.name] = text.strip() or None
    return {k: v for k, v in params.items() if v is not None}


def duration(seconds: float) -> str:
    """'under a second', 'about 40 s', 'about 3.5 min', 'about 1.2 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.1f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Display:
    """How maps are drawn: overlay opacity, colormap, and one colour scale per method across the gallery."""

    opacity: float
    colormap: str
    shared: bool


def display_ui(default_colormap: str) -> Display:
    cols = st.columns(3)
    opacity = cols[0].slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="explain_opacity")
    colormap = sticky_select("Colormap", COLORMAPS, "explain_colormap", default=default_colormap, container=cols[1],
                             help="inferno (the default for grayscale scans) rises steadily in lightness, so it "
                                  "reads over gray images and in print; viridis suits colour photographs.")
    shared = cols[2].toggle("One colour scale per method across cases", value=True, key="explain_shared_scale",
                            help="On: a colour means the same attribution in every image of the gallery, so maps "
                                 "compare across images. Off: each map is stretched to its own maximum.")
    return Display(float(opacity), colormap, bool(shared))


def draw(image, amap, display: Display, scale: tuple[float, float] | None):
    vmin, vmax = scale if (display.shared and scale) else (None, None)
    return overlay(image, amap, colormap=display.colormap, opacity=display.opacity, vmin=vmin, vmax=vmax)


def scale_of(maps: dict, extra=()) -> tuple[float, float] | None:
    """The shared (vmin, vmax) of a method over the gallery's cached maps plus the maps on screen."""
    pooled = list(maps.values()) + [m for m in extra if m is not None]
    return shared_scale(pooled) if pooled else None


def colour_bar(display: Display, scales: dict, container=None) -> None:
    """The colormap as a horizontal bar, with each method's scale (shared across the gallery, or per map)."""
    box = container or st
    # core's bar is vertical with the top at vmax; turned clockwise, low is on the left
    box.image(colorbar(display.colormap, height=240, width=12).rotate(-90, expand=True), width=240)
    if display.shared and any(scales.values()):
        parts = [f"{get_explainer(m).title} 0 to {s[1]:.3g} ({get_explainer(m).map_unit})"
                 for m, s in scales.items() if s]
        box.caption("Colour scale, transparent to bright, shared across the gallery's computed maps: "
                    + "; ".join(parts) + ".")
    else:
        box.caption("Each map on its own scale: transparent at 0, bright at its own maximum.")


# -- background job: compute a gallery's maps off the script thread ----------------------------------------
@st.cache_resource(show_spinner=False)
def _job_board() -> dict:
    """Jobs by id, shared by every session of this server: plain dicts a worker thread updates (never st.*)."""
    return {"lock": threading.Lock(), "jobs": {}, "generation": 0}


def generation() -> int:
    """Goes up whenever maps are added to the cache from this server, so cached gallery reads refresh."""
    return _job_board()["generation"]


def maps_added() -> None:
    board = _job_board()
    with board["lock"]:
        board["generation"] += 1


def job_id_for(model: ExplainModel, cases: Sequence[Case], methods: dict) -> str:
    text = json.dumps([model.model_id, [list(c) for c in cases], methods], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _run_job(board: dict, job: dict, model: ExplainModel, images: CaseImages, cases: list, methods: dict,
             cache_root: str) -> None:
    def progress(done: int, total: int, cached: int) -> None:
        # Progress points of the maps computed (cache hits are instant): the first one after start-up and the
        # latest, from which core.train.progress.measured_rate measures the rate and the time left.
        mark = (time.time(), int(done) - int(cached))
        job.update(done=done, total=total, cached=cached, last_mark=mark)
        if job.get("first_mark") is None:
            job["first_mark"] = mark

    outcome = {}
    try:
        run = explain_cases(model, images, cases, methods, MapCache(cache_root), progress=progress,
                            should_stop=job["stop"].is_set)
        outcome = {"status": "stopped" if run.stopped else "done", "computed": run.computed, "cached": run.cached,
                   "failed": run.failed, "seconds": run.seconds}
    except Exception as exc:  # noqa: BLE001 - a worker reports every failure instead of dying unseen
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        with board["lock"]:
            board["generation"] += 1
            job.update(finished=time.time(), **{k: v for k, v in outcome.items() if k != "status"})
            job["status"] = outcome.get("status", "failed")  # last: readers see a finished job complete


def start_maps_job(model: ExplainModel, images: CaseImages, cases: Sequence[Case], methods: dict,
                   cache: MapCache) -> str:
    """Start (or join, if the same one is running) a worker thread computing every case's maps into the cache."""
    board, job_id = _job_board(), job_id_for(model, cases, methods)
    with board["lock"]:
        now = time.time()
        for old in [k for k, j in board["jobs"].items() if j.get("finished") and now - j["finished"] >
                    FINISHED_JOBS_KEPT_S]:
            del board["jobs"][old]
        running = board["jobs"].get(job_id)
        if running is not None and running["status"] == "running":
            return job_id
        job = {"status": "running", "done": 0, "total": len(cases) * len(methods), "cached": 0, "computed": 0,
               "failed": [], "error": None, "started": now, "finished": None, "n_cases": len(cases),
               "methods": list(methods), "stop": threading.Event()}
        board["jobs"][job_id] = job
    # The worker explains with its own copy of the weights, so this page's Grad-CAM never waits on its lock.
    worker = threading.Thread(target=_run_job, name=f"explain-maps-{job_id[:8]}", daemon=True,
                              args=(board, job, model.clone(), images, list(cases), dict(methods), str(cache.root)))
    worker.start()
    return job_id


def job_state(job_id: str) -> dict | None:
    return _job_board()["jobs"].get(job_id)


def job_progress_text(job: dict, now: float | None = None) -> str:
    """'Computing maps: 5/16 (1 from the cache), about 2.0 min elapsed, about 4.0 min left': the time left from the
    rate the maps computed so far measured (core.train.progress.measured_rate: start-up and cache hits never enter it),
    counting down between updates; 'measuring the rate' until two progress points differ."""
    from core.train.progress import measured_rate

    now = time.time() if now is None else now
    done, total, cached = job["done"], max(job["total"], 1), job.get("cached", 0)
    text = f"Computing maps: {done}/{total} ({cached} from the cache), {duration(now - job['started'])} elapsed"
    first, last = job.get("first_mark"), job.get("last_mark")
    left = None
    if first is not None and last is not None:
        _, left = measured_rate(first, last, total - cached, now=now)
    if done >= total:
        return text
    return text + (f", {duration(left)} left" if left is not None else ", measuring the rate")


@st.fragment(run_every=1)
def _job_progress(job_id: str) -> None:
    job = job_state(job_id)
    if job is None or job["status"] != "running":
        st.rerun()  # the whole page, so the gallery shows the new maps
        return
    st.progress(job["done"] / max(job["total"], 1), text=job_progress_text(job))
    if st.button("Stop", key="explain_job_stop", icon=":material/stop:"):
        job["stop"].set()


def job_ui(model: ExplainModel, images: CaseImages, cases: Sequence[Case], methods: dict, cache: MapCache,
           estimate: float) -> None:
    """The "compute maps for these N cases" button, the polling progress bar and the outcome."""
    n = len(cases)
    names = " and ".join(METHODS.get(m, m) for m in methods) or "no method"
    clicked = st.button(f"Compute maps for these {n} cases", key="explain_job_start", type="primary",
                        disabled=n == 0 or not methods or n > MAX_JOB_CASES, icon=":material/play_arrow:")
    st.caption(f"{names}, with the settings above: {duration(estimate * n)} on this machine "
               f"({duration(estimate)} per case), a first guess: the progress bar measures the real rate; maps "
               "already on disk are reused, so a second run is instant."
               + (f" Narrow the selection to at most {MAX_JOB_CASES:,} cases." if n > MAX_JOB_CASES else ""))
    if clicked:
        st.session_state[state.EXPLAIN_JOB] = start_maps_job(model, images, cases, methods, cache)
    job_id = st.session_state.get(state.EXPLAIN_JOB)
    job = job_state(job_id) if job_id else None
    if job is None:
        return
    if job["status"] == "running":
        _job_progress(job_id)
    elif job["status"] == "failed":
        show_error("Computing the maps failed:", job.get("error") or "unknown error")
    else:
        verb = "Stopped" if job["status"] == "stopped" else "Done"
        st.success(f"{verb}: {job['computed'] + job['cached']} of {job['total']} maps ready for {job['n_cases']} "
                   f"cases, {job['computed']} computed and {job['cached']} found in the cache, in "
                   f"{duration(job.get('seconds') or 0)}.", icon=":material/check_circle:")
        if job.get("failed"):
            st.warning(f"{len(job['failed'])} maps could not be computed:")
            st.dataframe(pd.DataFrame({"problem": job["failed"]}), hide_index=True, key="explain_job_failed")


# -- one case ----------------------------------------------------------------------------------------------
def map_or_button(model: ExplainModel, images: CaseImages, image, image_id: str, target: int, method: str,
                  params: dict, cache: MapCache, key: str, container, estimate: float):
    """A method the registry marks `at_once` (Grad-CAM: one backward) is computed at once; others (occlusion) are
    read from the cache, or computed on request (the caller says how long that takes)."""
    amap = case_map(model, images, image_id, target, method, params, cache, compute=False, image=image)
    if amap is not None or get_explainer(method).at_once:
        if amap is None:
            amap = case_map(model, images, image_id, target, method, params, cache, image=image)
            maps_added()
        return amap
    if container.button(f"Compute {METHODS[method].lower()}", key=key, icon=":material/play_arrow:",
                        help=f"{duration(estimate).capitalize()} on this machine; the map is kept on disk."):
        with container, st.spinner(f"Computing the {METHODS[method].lower()} map ({duration(estimate)})..."):
            amap = case_map(model, images, image_id, target, method, params, cache, image=image)
        maps_added()
        # Draw the page again: the map is now in the cache, so the button goes and the map takes its place in line
        # with the others (drawn under the button in this run it pushed the row out of line).
        st.rerun()
    return amap
