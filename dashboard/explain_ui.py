"""Explain page building blocks: the cached model and images, filter and map-setting widgets, overlays, and the
background job that computes a gallery's maps off the script thread (polled with st.fragment)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
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
from core.explain.lung_mask import LungField, applies_to, lung_field
from core.explain.overlay import outline, overlay
from core.explain.scoring import score_against_region
from core.explain.registry import list_explainers
from core.explain.gallery import DISAGREEMENTS, OUTCOMES, CaseFilter, has_readings
from core.jobs import DONE, Job, find_job, get_job, start_job
from core.models import find_checkpoint
from core.store import Workspace
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.common import registered_dataset
from dashboard.jobs_ui import duration, job_panel
from dashboard.widgets import plain, show_error, sticky_select


METHODS = {explainer.name: explainer.title for explainer in list_explainers()}  # name -> title, in UI order
MAX_JOB_CASES = 2000
EXPLAIN = "explain"  # the maps job's kind on the job board (core.jobs)


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


@st.cache_resource(show_spinner=False, max_entries=4096)
def _lung_field(test_set_id: str, fingerprint: str, image_id: str, _images: CaseImages) -> LungField:
    try:
        return lung_field(_images.image(image_id))
    except (InputError, OSError) as exc:
        return LungField(None, f"the image cannot be opened ({exc})")


def lung_fields(task, images: CaseImages, test_set: dict, image_ids) -> dict | None:
    """image_id -> LungField (core.explain.lung_mask, computed once per image and test-set version) for chest X-ray
    tasks; None for other tasks (no lung field is looked for)."""
    if not applies_to(task):
        return None
    key = (str(test_set["id"]), str(test_set.get("fingerprint")))
    return {str(i): _lung_field(*key, str(i), images) for i in dict.fromkeys(image_ids)}


def lung_caption(amap, field: LungField | None) -> str:
    """One line under a map: its share of positive attribution inside the lung field and where its peak is."""
    if field is None:
        return ""
    if not field.found:
        return f"Lung field: none found ({field.reason}); not scored."
    score = score_against_region(amap, field.mask)
    if score.share != score.share:  # NaN: no positive attribution
        return "Lung field: the map has no positive attribution."
    return (f"Lung field: {score.share:.0%} of the positive attribution inside; peak "
            f"{'inside' if score.peak_inside else 'outside'} the lungs.")


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


@dataclass(frozen=True)
class Display:
    """How maps are drawn: overlay opacity, colormap, and one colour scale per method across the gallery."""

    opacity: float
    colormap: str
    shared: bool
    lung_outline: bool = False


def display_ui(default_colormap: str, lung_reference: bool = False) -> Display:
    """Opacity, colormap, shared scale; for chest X-rays (`lung_reference`) the lung field's outline on or off."""
    cols = st.columns(4 if lung_reference else 3)
    opacity = cols[0].slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="explain_opacity")
    colormap = sticky_select("Colormap", COLORMAPS, "explain_colormap", default=default_colormap, container=cols[1],
                             help="inferno (the default for grayscale scans) rises steadily in lightness, so it "
                                  "reads over gray images and in print; viridis suits colour photographs.")
    shared = cols[2].toggle("One colour scale per method across cases", value=True, key="explain_shared_scale",
                            help="On: a colour means the same attribution in every image of the gallery, so maps "
                                 "compare across images. Off: each map is stretched to its own maximum.")
    lungs = lung_reference and cols[3].toggle(
        "Outline the lung field", value=True, key="explain_lung_outline",
        help="A reference region found from intensity and shape (not a segmentation model): the two darkest regions "
             "of lung size inside the chest. Missing where it cannot be found (lateral views, heavy "
             "opacification).")
    return Display(float(opacity), colormap, bool(shared), bool(lungs))


def draw(image, amap, display: Display, scale: tuple[float, float] | None, lungs: LungField | None = None):
    """The map over the image (the image alone when amap is None), with the lung field's outline when shown."""
    vmin, vmax = scale if (display.shared and scale) else (None, None)
    picture = (overlay(image, amap, colormap=display.colormap, opacity=display.opacity, vmin=vmin, vmax=vmax)
               if amap is not None else image.convert("RGB"))
    if display.lung_outline and lungs is not None and lungs.found:
        picture = outline(picture, lungs.mask)
    return picture


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
def _generation() -> dict:
    """A counter shared by every session of this server; a worker gets it from the page that starts it."""
    return {"lock": threading.Lock(), "value": 0}


def generation() -> int:
    """Goes up whenever maps are added to the cache from this server, so cached gallery reads refresh."""
    return _generation()["value"]


def maps_added(counter: dict | None = None) -> None:
    counter = counter if counter is not None else _generation()
    with counter["lock"]:
        counter["value"] += 1


def maps_job_key(model: ExplainModel, cases: Sequence[Case], methods: dict) -> str:
    text = json.dumps([model.model_id, [list(c) for c in cases], methods], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _maps_work(model: ExplainModel, images: CaseImages, cases: list, methods: dict, cache_root: str, counter: dict):
    """explain_cases as a job's work (core.jobs); cache hits are not counted for the rate (they cost nothing)."""
    def work(progress) -> dict:
        def report(done: int, total: int, cached: int) -> None:
            progress(done / max(total, 1), f"Computing maps: {done}/{total} ({cached} from the cache)",
                     done=done - cached, total=total - cached)

        try:
            run = explain_cases(model, images, cases, methods, MapCache(cache_root), progress=report)
        finally:
            maps_added(counter)  # stopped or failed too: the maps computed so far are in the cache
        return {"computed": run.computed, "cached": run.cached, "failed": run.failed, "seconds": run.seconds,
                "total": len(cases) * len(methods), "n_cases": len(cases)}

    return work


def start_maps_job(ws: Workspace, model: ExplainModel, images: CaseImages, cases: Sequence[Case], methods: dict,
                   cache: MapCache) -> Job:
    """Start (or join, if the same one is running) a job computing every case's maps into the cache."""
    key = maps_job_key(model, cases, methods)
    running = find_job(ws, EXPLAIN, key)
    if running is not None and running.active:
        return running
    actor = current_actor()
    # The worker explains with its own copy of the weights, so this page's Grad-CAM never waits on its lock.
    return start_job(ws, EXPLAIN, key, _maps_work(model.clone(), images, list(cases), dict(methods),
                                                  str(cache.root), _generation()),
                     title="computing the maps", unit="maps", owner=actor.user_id if actor else None)


def job_ui(ws: Workspace, model: ExplainModel, images: CaseImages, cases: Sequence[Case], methods: dict,
           cache: MapCache, estimate: float) -> None:
    """The "compute maps for these N cases" button, the job's progress (dashboard.jobs_ui) and its outcome. The job
    is this session's (its id in state.EXPLAIN_JOB), else the one for these cases and methods: after a reload the
    page finds it again."""
    n = len(cases)
    names = " and ".join(METHODS.get(m, m) for m in methods) or "no method"
    clicked = st.button(f"Compute maps for these {n} cases", key="explain_job_start", type="primary",
                        disabled=n == 0 or not methods or n > MAX_JOB_CASES, icon=":material/play_arrow:")
    st.caption(f"{names}, with the settings above: {duration(estimate * n)} on this machine "
               f"({duration(estimate)} per case), a first guess: the progress bar measures the real rate; maps "
               "already on disk are reused, so a second run is instant."
               + (f" Narrow the selection to at most {MAX_JOB_CASES:,} cases." if n > MAX_JOB_CASES else ""))
    if clicked:
        st.session_state[state.EXPLAIN_JOB] = start_maps_job(ws, model, images, cases, methods, cache).id
    job = (get_job(ws, st.session_state.get(state.EXPLAIN_JOB))
           or (find_job(ws, EXPLAIN, maps_job_key(model, cases, methods)) if methods else None))
    if job_panel(job, key="explain_job", failed="Computing the maps failed:") != DONE:
        return
    done = job.result
    st.success(f"Done: {done['computed'] + done['cached']} of {done['total']} maps ready for {done['n_cases']} "
               f"cases, {done['computed']} computed and {done['cached']} found in the cache, in "
               f"{duration(done['seconds'] or 0)}.", icon=":material/check_circle:")
    if done["failed"]:
        st.warning(f"{len(done['failed'])} maps could not be computed:")
        st.dataframe(pd.DataFrame({"problem": done["failed"]}), hide_index=True, key="explain_job_failed")


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
