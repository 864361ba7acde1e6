"""Performance page blocks: the model's own operating point (from training) and site recalibration."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.metrics.model_operating_point import OPERATING_RULES, ModelOperatingPoint
from core.store import Workspace
from dashboard import state
from dashboard.access_ui import current_actor
from dashboard.evaluation_ui import move_operating_point
from dashboard.widgets import plain

RECALIBRATE_RULES = ("youden", "sensitivity")


def training_operating_point(card: dict | None) -> ModelOperatingPoint | None:
    """The operating point stored in a model card (None for older models, multi-label tasks, argmax)."""
    return ModelOperatingPoint.from_dict((card or {}).get("operating_point"), source="model card")


def operating_point_note(point: ModelOperatingPoint | None, view_name: str | None,
                         adaptation: str | None = None) -> None:
    """One line under the threshold slider: where the model's own threshold is and how it was chosen. For an adapted
    or recalibrated run, `adaptation` (core.infer.site_check.adaptation_text) says so first: its threshold was not
    chosen on the training images alone."""
    if adaptation:
        st.caption(f"**{plain(adaptation)}**")
    if point is None:
        st.caption("Operating point from training: none stored (an older model, or 'most probable class'); the "
                   "model's calls are its most probable class.")
        return
    where = "" if view_name in (None, point.view) else f" (set on the view '{point.view}')"
    rule = OPERATING_RULES.get(point.rule, point.rule)
    target = f", target {point.target:g}" if point.target is not None else ""
    origin = "Operating point of this adapted run" if adaptation else "Operating point from training"
    st.caption(f"**{origin}: {point.threshold:.3f}**{where}. Chosen by {rule}{target}, on "
               f"{plain(point.source)}: sensitivity {point.sensitivity:.3f}, specificity {point.specificity:.3f} "
               f"({point.n_positive} positive, {point.n_negative} negative). The model's 'predicted' column uses it.")


def use_model_point(point: ModelOperatingPoint | None, view, key: str, container=None) -> None:
    """A button that puts the threshold slider at the model's operating point (when it is set on this view)."""
    if point is None or point.view != view.name:
        return

    (container or st).button("Use the operating point from training", key=f"{key}_use_model_point",
                             on_click=move_operating_point, args=(key, float(point.threshold)),
                             icon=":material/my_location:")


def _row(label: str, part: dict) -> dict:
    sens, spec = part["sensitivity"], part["specificity"]
    return {"": label, "images": part["n"],
            "sensitivity": f"{sens['value']:.3f} ({sens['low']:.3f} to {sens['high']:.3f})",
            "specificity": f"{spec['value']:.3f} ({spec['low']:.3f} to {spec['high']:.3f})"}


def recalibration_table(result: dict) -> pd.DataFrame:
    """Before / after sensitivity and specificity (95% Wilson intervals) on the images not used to recalibrate."""
    rows = [_row("before (operating point from training)", result["before"]),
            _row("after (recalibrated on the site sample)", result["after"])]
    return pd.DataFrame(rows)


def recalibration_panel(ws: Workspace, run_id: str, test_set_id: str, n_images: int, key: str) -> dict | None:
    """Widgets to recalibrate `run_id` on a labelled sample of the test set; returns the result once run."""
    from core.infer.imported import is_imported_run
    from core.infer.recalibrate import MIN_SAMPLE

    if is_imported_run(ws.get_run(run_id)):  # core refuses it too (core.infer.predict.resolve_model)
        st.info("These scores were imported from a file: recalibration makes a new run from the model, and no model "
                "came with them.", icon=":material/info:")
        return None
    st.markdown("A model's threshold is set on its training data. Another site's scanners and export pipeline "
                "can move every score; a small labelled sample from the site refits the threshold (and a "
                "temperature, when that helps). The result is a **new run**; this run is never changed.")
    if n_images <= MIN_SAMPLE + 1:
        st.info(f"This test set holds {n_images} images: recalibration needs more than {MIN_SAMPLE + 1} (a "
                "sample to fit on and the rest to check it).", icon=":material/info:")
        return None
    col1, col2, col3 = st.columns(3)
    default = min(max(MIN_SAMPLE, 40), n_images - 1)
    size = int(col1.number_input("Labelled images to recalibrate on", MIN_SAMPLE, n_images - 1, default,
                                 key=f"{key}_size", help="Whole patients, stratified by class, seeded; the rest of "
                                                         "the test set shows the effect."))
    rule = col2.selectbox("Rule", RECALIBRATE_RULES, key=f"{key}_rule", format_func=lambda r: OPERATING_RULES[r])
    target = None
    if rule == "sensitivity":
        target = float(col3.slider("Target sensitivity", 0.5, 0.999, 0.95, 0.005, key=f"{key}_target"))
    if not st.button("Recalibrate into a new run", key=f"{key}_go", icon=":material/tune:"):
        return st.session_state.get(state.companion_key(key, "result"))
    from core.infer.recalibrate import recalibrate

    with st.spinner("Recalibrating (the model's predictions on this test set are reused)..."):
        result = recalibrate(run_id, test_set_id, ws, sample_size=size, rule=rule, target=target,
                             actor=current_actor()).to_dict()
    st.session_state[state.companion_key(key, "result")] = result
    return result


def show_recalibration_result(result: dict, key: str) -> None:
    """What a labelled recalibration just made: the new run and, on the images it did not use, before / after."""
    st.success(f"New run {plain(result['run_id'])}: threshold {result['operating_point']['threshold']:.3f}, "
               f"temperature {result['temperature']:.2f}, fitted on {result['sample']['n']} images; this run "
               "is unchanged. Pick the new run above to evaluate it.", icon=":material/tune:")
    if result["before"] and result["after"]:
        st.caption(f"On the other {result['sample']['n_rest']} images of this test set (95% Wilson intervals):")
        st.dataframe(recalibration_table(result), hide_index=True, key=f"{key}_table")
