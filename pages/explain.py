"""Explain: where the model looks, case by case: a gallery of misclassified (or any) cases with occlusion and
Grad-CAM maps side by side, lesion-box scores and downloads."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.explain import MapCache
from core.explain.case_maps import case_map, score_cases
from core.explain.exports import draw_boxes, overlays_zip, png_bytes, safe_file_name, suggested_colormap
from core.explain.registry import get_explainer
from core.explain.gallery import case_table, select_cases
from core.explain.lung_mask import applies_to
from core.explain.scoring import summarise_lung_scores
from core.readers import list_readings
from core.store.csv_safe import csv_bytes
from dashboard import state
from dashboard.common import get_workspace
from dashboard.downloads import table_download
from dashboard.evaluation_ui import evaluation_or_stop
from dashboard.import_ui import maps_need_a_model
from dashboard.explain_ui import (METHODS, boxes_ui, colour_bar, display_ui, draw, duration, filters_ui,
                                  gallery_maps, images_for, job_ui, lung_caption, lung_fields, map_or_button,
                                  maps_added, method_params_ui, model_for_run, row_click_case, scale_of)
from dashboard.widgets import plain, show_error, sticky_select

GALLERY_PAGE = 12
THUMBNAIL_PX = 160

st.title("Explain")
st.caption("Where the model looks: occlusion maps (hide a window, watch the probability drop; as in Kermany et al. "
           "2018) and Grad-CAM maps (fast, coarse) over each image, for the cases the model gets wrong or any "
           "others you pick; scored against lesion boxes when there are any.")

ws = get_workspace()
selection = evaluation_or_stop(ws, key="explain")
if maps_need_a_model(selection):  # imported scores: no model came with them
    st.stop()
task, frame, test_set = selection.task, selection.frame, selection.test_set
if not test_set or not test_set.get("source"):
    st.warning("The images of this test set are not registered in this workspace, so there is nothing to draw on.")
    st.stop()
try:
    model = model_for_run(ws, selection.run_id)
    images = images_for(ws, test_set)
    readings = list_readings(ws, selection.dataset_id)
    cases = case_table(frame, task.classes, readings)
except (InputError, OSError) as exc:
    show_error("This model or test set cannot be explained:", exc)
    st.stop()
if list(model.classes) != list(task.classes):
    st.error(f"The model's classes ({plain(', '.join(model.classes))}) differ from the predictions' "
             f"({plain(', '.join(task.classes))}); run the model on the test set again.")
    st.stop()
if cases.empty:
    st.info("This test set has no predictions to explain.")
    st.stop()
cache = MapCache.for_workspace(ws)

# -- which cases -------------------------------------------------------------------------------------------
with st.container(border=True):
    cell = st.session_state.get(state.CONFUSION_CELL)
    if not (isinstance(cell, dict) and cell.get("run_id") == selection.run_id
            and cell.get("test_set_id") == selection.dataset_id):
        cell = None
    case_filter = filters_ui(cases, task.classes, cell, st.session_state.get(state.CELL_APPLIED))
try:
    selected = select_cases(cases, case_filter)
except InputError as exc:
    st.error(plain(exc))
    st.stop()
gallery_cases = [(i, model.class_index(t)) for i, t in zip(selected["image_id"], selected["target_class"])]

# -- how maps are made and drawn ---------------------------------------------------------------------------
with st.expander("Map settings: methods, parameters, expected time", expanded=False):
    methods, estimates = {}, {}
    for column, method in zip(st.columns(len(METHODS)), METHODS):
        if sentence := model.not_offered(method):
            column.caption(sentence)
            continue
        if column.checkbox(METHODS[method], value=True, key=f"explain_use_{method}"):
            methods[method] = method_params_ui(method, model.input_hw, column)
            try:
                estimates[method] = model.expected_seconds(method, methods[method])
                column.caption(f"{duration(estimates[method]).capitalize()} per map on this machine "
                               f"({model.seconds_per_image() * 1000:.1f} ms per forward pass, measured).")
            except InputError as exc:
                column.error(plain(exc))
try:
    default_colormap = suggested_colormap(images.image(selected["image_id"].iat[0] if len(selected)
                                                       else cases["image_id"].iat[0]))
except (InputError, OSError):
    default_colormap = "inferno"
display = display_ui(default_colormap, lung_reference=applies_to(task))
boxes, _ = boxes_ui(images, test_set)
gallery = {method: gallery_maps(model, images, gallery_cases, method, params, cache)
           for method, params in methods.items()}

# -- gallery -----------------------------------------------------------------------------------------------
st.subheader(f"Gallery: {len(selected):,} cases")
if selected.empty:
    st.info("No case matches these filters. Widen them above (or choose **All cases**).")
    st.stop()
shown_columns = ["image_id", "label", "predicted", "confidence", "p_true"] + (
    ["n_readers", "readers_correct", "reader_answers"] if "reader_answers" in selected else [])
st.dataframe(selected[shown_columns], hide_index=True, height=240, key="explain_table", on_select="rerun",
             selection_mode="single-row",
             column_config={"label": "true class", "predicted": "called",
                            "confidence": st.column_config.ProgressColumn("confidence", format="%.3f",
                                                                          min_value=0.0, max_value=1.0),
                            "p_true": st.column_config.NumberColumn("P(true class)", format="%.3f"),
                            "readers_correct": st.column_config.NumberColumn("readers right", format="percent")})
pages = max(1, -(-len(selected) // GALLERY_PAGE))
top = st.columns([2, 3])
page = int(top[0].number_input(f"Gallery page (of {pages})", 1, pages, 1, key="explain_page")) if pages > 1 else 1
shows = sticky_select("Thumbnails show", ["image", *methods], "explain_thumbs", container=top[1], widget="radio",
                      horizontal=True,
                      format_func=lambda m: "the image" if m == "image" else f"{METHODS[m]} overlay" + (
                          "" if get_explainer(m).at_once else " (when computed)"))
chunk = selected.iloc[(page - 1) * GALLERY_PAGE: page * GALLERY_PAGE]
# chest X-rays: the lung field of every case on screen or with a map (None for other tasks)
lungs = lung_fields(task, images, test_set, [*chunk["image_id"], *(i for maps in gallery.values() for i in maps)])
scales = {method: scale_of(maps) for method, maps in gallery.items()}
thumbs, captions, unreadable, new_maps = [], [], [], False
facts_target = dict(zip(selected["image_id"], selected["target_class"]))
for image_id, label, called, confidence in chunk[["image_id", "label", "predicted", "confidence"]].itertuples(
        index=False):
    try:
        image = images.image(image_id)
    except (InputError, OSError) as exc:
        unreadable.append(f"{image_id}: {exc}")
        continue
    amap = gallery.get(shows, {}).get(image_id)
    if amap is None and shows != "image" and get_explainer(shows).at_once:  # cheap: draw the page's maps at once
        amap = case_map(model, images, image_id, model.class_index(facts_target[image_id]), shows, methods[shows],
                        cache, image=image)
        new_maps = True
    picture = draw(image, amap, display, scales.get(shows), (lungs or {}).get(image_id))
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    thumbs.append(picture)
    captions.append(f"{image_id}: true {label}, called {called} ({confidence:.0%})")
if new_maps:
    maps_added()
if thumbs:
    st.image(thumbs, caption=captions, width=THUMBNAIL_PX)
if unreadable:
    st.warning("Some images of this page cannot be opened:")
    st.dataframe(pd.DataFrame({"problem": unreadable}), hide_index=True, key="explain_unreadable")
job_ui(ws, model, images, gallery_cases, methods, cache, sum(estimates.values()))

# -- one case ----------------------------------------------------------------------------------------------
st.subheader("One case")
ids = selected["image_id"].tolist()
picked = (st.session_state.get(state.EXPLAIN_TABLE) or {}).get("selection", {}).get("rows", [])
if clicked_case := row_click_case(picked, ids, st.session_state.get(state.EXPLAIN_TABLE_APPLIED)):
    st.session_state[state.EXPLAIN_TABLE_APPLIED] = clicked_case
    st.session_state[state.EXPLAIN_CASE] = clicked_case
facts = selected.set_index("image_id")
case_id = sticky_select("Case (or click a row of the table)", ids, state.EXPLAIN_CASE,
                        format_func=lambda i: f"{i}: true {facts.at[i, 'label']}, called {facts.at[i, 'predicted']}")
case = facts.loc[case_id]
try:
    image = images.image(case_id)
except (InputError, OSError) as exc:
    show_error("This case's image cannot be opened:", exc)
    st.stop()
call = str(case["target_class"])
others = ["(none)"] + [c for c in task.classes if c != call]
contrast = sticky_select(f"Also show the maps for another class (why {plain(call)} and not ...?)", others,
                         "explain_contrast")
info, maps_area = st.columns([1, 3])
with info:
    st.text(f"Image: {case_id}\nTrue class: {case['label']}\nCalled: {case['predicted']} "
            f"({case['confidence']:.1%})\nCorrect: {'yes' if case['correct'] else 'no'}")
    row = frame[frame["image_id"].astype(str) == case_id].iloc[0]
    probabilities = pd.DataFrame({"class": list(task.classes),
                                  "probability": [float(row[f"prob_{c}"]) for c in task.classes]})
    st.dataframe(probabilities, hide_index=True, key="explain_probabilities",
                 column_config={"probability": st.column_config.ProgressColumn(format="%.3f", min_value=0.0,
                                                                               max_value=1.0)})
    answers = readings[readings["image_id"].astype(str) == case_id][["reader_id", "label"]]
    if len(answers):
        # Plain text lines, not a table: in this narrow column a table showed only reader_id, the answer cut off.
        st.caption("Readers' answers")
        st.text("\n".join(f"{reader}: {answer}" for reader, answer in answers.itertuples(index=False)))
    elif not readings.empty:
        st.caption("No reader graded this image.")
case_boxes = boxes.get(case_id, [])
case_lungs = (lung_fields(task, images, test_set, [case_id]) or {}).get(case_id)
if lungs is not None:
    lungs[case_id] = case_lungs
on_screen = {method: [] for method in methods}
called_maps = {}  # this case's maps for the model's call, the target the gallery's maps explain
with maps_area:
    for target_name in [call] + ([contrast] if contrast != "(none)" else []):
        target = model.class_index(target_name)
        st.markdown(f"**Evidence for {plain(target_name)}** (probability "
                    f"{float(row[f'prob_{target_name}']):.3f})")
        columns = st.columns(1 + max(len(methods), 1))
        columns[0].image(draw_boxes(image, case_boxes), width="stretch",
                         caption=f"{case_id}" + (f" with {len(case_boxes)} lesion boxes" if case_boxes else ""))
        for column, method in zip(columns[1:], methods):
            amap = map_or_button(model, images, image, case_id, target, method, methods[method], cache,
                                 f"explain_compute_{method}_{target_name}", column, estimates.get(method, 0.0))
            if amap is None:
                column.caption(f"{METHODS[method]}: not computed yet ({duration(estimates.get(method, 0.0))} "
                               "on this machine).")
                continue
            on_screen[method].append(amap)
            if target_name == call:
                called_maps[method] = amap
            pooled = scale_of(gallery.get(method, {}), on_screen[method])
            picture = draw_boxes(draw(image, amap, display, pooled, case_lungs), case_boxes)
            column.image(picture, width="stretch", caption=f"{METHODS[method]} for {target_name}")
            if case_lungs is not None:
                column.caption(lung_caption(amap, case_lungs))
            name = f"{method}-{safe_file_name(target_name)}-{safe_file_name(case_id)}.png"
            column.download_button("PNG", png_bytes(picture), key=f"explain_png_{method}_{target_name}",
                                   file_name=name, mime="image/png", icon=":material/download:", on_click="ignore")
    colour_bar(display, {method: scale_of(gallery[method], on_screen[method]) for method in methods})

# -- scores and downloads ----------------------------------------------------------------------------------
st.subheader("Scores and downloads")
maps_by_method = {method: {**gallery[method], **({case_id: called_maps[method]} if method in called_maps else {})}
                  for method in methods}
n_maps = sum(len(maps) for maps in maps_by_method.values())
scores, summary = score_cases(selected, maps_by_method, boxes, task.classes, lung_fields=lungs) if n_maps else (
    pd.DataFrame(), pd.DataFrame())
if boxes and not summary.empty:
    overall = summary[(summary["class"] == "all classes")]
    st.caption("Pointing game: the map's highest point falls inside a lesion box (Kermany et al. report 94.7% for "
               "occlusion on 491 images). Share in boxes: positive attribution inside the boxes / all of it. Over "
               "the cases of this gallery whose maps are computed and that have boxes; 95% Wilson intervals.")
    score_columns = {name: st.column_config.NumberColumn(format="percent") for name in
                     ("pointing_rate", "pointing_low", "pointing_high")} | {
        name: st.column_config.NumberColumn(format="%.3f") for name in ("mean_positive_share",
                                                                         "median_positive_share")}
    st.dataframe(overall.drop(columns=["class"]), hide_index=True, key="explain_summary_overall",
                 column_config=score_columns)
    with st.expander("Per class"):
        st.dataframe(summary, hide_index=True, key="explain_summary", column_config=score_columns)
elif not boxes:
    st.caption("No lesion boxes: maps are not scored against boxes.")
lung_summary = summarise_lung_scores(scores) if lungs is not None else pd.DataFrame()
if not lung_summary.empty:
    st.caption("Lung field (a reference region from intensity and shape, not a segmentation model; none where it "
               "cannot be found, e.g. lateral views or heavy opacification): the median share of each map's positive "
               "attribution inside it, and how many maps peak inside the lungs (95% Wilson interval), over this "
               "gallery's computed maps whose image has a lung field.")
    st.dataframe(lung_summary, hide_index=True, key="explain_lung_summary",
                 column_config={"median_lung_share": st.column_config.NumberColumn(format="percent"),
                                "peak_in_lungs_rate": st.column_config.NumberColumn(format="percent"),
                                "peak_low": st.column_config.NumberColumn(format="percent"),
                                "peak_high": st.column_config.NumberColumn(format="percent")})
st.caption(f"{n_maps} maps of this gallery are computed" + (" (compute the rest with the button above)."
                                                             if n_maps < len(selected) * len(methods) else "."))
cols = st.columns(3)
cols[0].download_button(
    "Overlays of the gallery (zip)", key="explain_zip", file_name="explain-overlays.zip", mime="application/zip",
    icon=":material/folder_zip:", on_click="ignore", disabled=n_maps == 0,
    data=lambda: overlays_zip(images, maps_by_method, colormap=display.colormap, opacity=display.opacity,
                              shared=display.shared,
                              files={name: csv_bytes(table) for name, table in
                                     (("scores.csv", scores), ("summary.csv", summary)) if not table.empty}))
table_download(scores, "explain-scores", key="explain_scores_csv", label="Scores per image (CSV)",
               container=cols[1], disabled=scores.empty)
table_download(summary, "explain-summary", key="explain_summary_csv", label="Summary per class (CSV)",
               container=cols[2], disabled=summary.empty)
