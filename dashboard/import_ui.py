"""Scores from elsewhere: the form that imports a score table against a test set (core.infer.imported), and the
notices the evaluation pages show for imported scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.tasks import get_task
from core.errors import InputError
from core.infer.imported import import_predictions, is_imported_run, plan_import, provenance_text
from core.infer.score_table import (SCORE_KINDS, SCORE_SUFFIXES, TRANSFORMS, ColumnMapping, check_mapping,
                                    detect_scores, one_column, read_score_file, score_values, suggest_mapping)
from core.infer.predictions import imported_provenance
from core.store import Workspace
from core.store.access import allowed
from dashboard.access_ui import current_actor
from dashboard.common import remember_selection, test_set_choice_label
from dashboard.downloads import table_download
from dashboard.widgets import plain, show_error

NONE = "(none)"
NAMES_SHOWN = 10  # first names of a mismatch list shown on the page; the whole list downloads


# -- on the evaluation pages --------------------------------------------------------------------------------
def imported_notice(selection) -> None:
    """Where imported scores came from and what was done to them, above an evaluation page's numbers."""
    provenance = imported_provenance(selection.meta)
    if provenance:
        st.info(plain(provenance_text(provenance)), icon=":material/upload_file:")


def maps_need_a_model(selection) -> bool:
    """True (having said why) when the chosen predictions are imported scores: maps need the model itself."""
    if not is_imported_run(selection.run):
        return False
    st.info("These scores were imported from a file, and no model came with them: occlusion and Grad-CAM maps "
            "need the model that made the scores. Register the model itself to see its maps.",
            icon=":material/info:")
    return True


# -- the form -------------------------------------------------------------------------------------------------
def _mapping_ui(columns: list[str], task, suggested: ColumnMapping, key: str) -> ColumnMapping:
    """Selectboxes for the image column, each class's score column and the optional `predicted` column, opened at
    the suggested (name-matched) mapping."""
    st.markdown("**Columns**: which column holds what (matched by name; change any that is wrong)")
    cells = st.columns(min(4, task.num_classes + 2))
    id_column = cells[0].selectbox("Image (id or file name)", columns, index=columns.index(suggested.id_column),
                                   key=f"{key}_id")
    options = [NONE, *columns]
    chosen = []
    for i, cls in enumerate(task.classes):
        default = suggested.by_class.get(cls, NONE)
        column = cells[(i + 1) % len(cells)].selectbox(f"Score of {cls}", options, index=options.index(default),
                                                       key=f"{key}_class_{i}")
        if column != NONE:
            chosen.append((cls, column))
    predicted = cells[(task.num_classes + 1) % len(cells)].selectbox(
        "The file's own calls (optional)", options, key=f"{key}_predicted",
        index=options.index(suggested.predicted_column or NONE))
    return ColumnMapping(id_column, tuple(chosen), None if predicted == NONE else predicted)


def _mismatch(names: list[str], what: str, file_name: str, key: str) -> None:
    """A mismatch list: its count, its first names as plain text, and the whole list as a CSV."""
    if not names:
        return
    st.warning(f"{len(names):,} {what}.", icon=":material/warning:")
    st.text("\n".join(names[:NAMES_SHOWN]) + ("\n..." if len(names) > NAMES_SHOWN else ""))
    table_download(pd.DataFrame({"image": names}), file_name, key=f"{key}_download", label="Download the list")


def import_scores_panel(ws: Workspace, test_sets: list[dict], key: str, default_id: str | None = None) -> None:
    """Upload a score table, map its columns, choose how its scores become probabilities, see what will be
    imported and what does not match, and import it as a predictions table of a new "imported" run."""
    actor = current_actor()
    if not allowed(actor, "start_run"):
        st.caption("Importing scores makes a new run: it needs the role admin or researcher.")
        return
    st.caption("A table of scores from another tool or a vendor: one row per image (`image_id` or its file name), "
               "one score column per class (one column is enough for a two-class task), and optionally the tool's "
               "own call (`predicted`). Probabilities, logits and percentages are recognised.")
    ids = [t["id"] for t in test_sets]
    by_id = {t["id"]: t for t in test_sets}
    test_set_id = st.selectbox("Test set the scores are for", ids, key=f"{key}_test_set",
                               index=ids.index(default_id) if default_id in ids else 0,
                               format_func=lambda i: test_set_choice_label(by_id[i]))
    upload = st.file_uploader("Score table", type=[s.lstrip(".") for s in SCORE_SUFFIXES], key=f"{key}_file")
    if upload is None:
        return
    record = by_id[test_set_id]
    try:
        scores = read_score_file(upload.getvalue(), upload.name)
        task = get_task(record["task"])
        suggested = suggest_mapping(scores.columns, task)
    except InputError as exc:
        show_error("This score file cannot be imported.", exc)
        return
    form_key = f"{key}_{scores.sha256[:12]}"  # a new file opens with its own suggested mapping
    mapping = _mapping_ui(scores.columns, task, suggested, form_key)
    try:
        check_mapping(mapping, scores.columns, task)
        detection = detect_scores(score_values(scores, mapping), task, one_column(mapping, task))
    except InputError as exc:
        show_error("The columns do not fit this test set's task yet.", exc)
        return
    st.markdown(f"**Scores**: they look like {SCORE_KINDS[detection.kind]}: {detection.reason}.")
    transforms = list(TRANSFORMS)
    transform = st.radio("Turn them into probabilities by", transforms, format_func=TRANSFORMS.get,
                         index=transforms.index(detection.transform), key=f"{form_key}_transform", horizontal=True)
    try:
        plan = plan_import(ws, scores, record, task, mapping, transform)
    except InputError as exc:
        show_error("These scores cannot be imported as they are.", exc)
        return
    align = plan.alignment
    st.markdown(f"**Preview**: {align.n_matched:,} images matched by {align.matched_by}; probabilities after "
                f"{plain(plan.transform_note)}.")
    st.dataframe(plan.preview(), hide_index=True, width="stretch")
    stem = Path(scores.name).stem
    _mismatch(align.missing_images, "test images have no score in the file: they are left out of every number",
              f"{stem}-images-without-scores", f"{form_key}_missing")
    _mismatch(align.unmatched_scores, "images named in the file are not in this test set",
              f"{stem}-names-not-in-test-set", f"{form_key}_extra")
    name = st.text_input("Name of the imported run", value=f"Imported: {stem}"[:120], max_chars=120,
                         key=f"{form_key}_name")
    if st.button("Import", key=f"{form_key}_import", type="primary", icon=":material/upload_file:"):
        try:
            result = import_predictions(ws, plan, name=name, actor=actor)
        except InputError as exc:
            show_error("The scores could not be imported.", exc)
            return
        remember_selection(run_id=result.run_id, test_set_id=result.test_set_id)
        said = "were already imported as" if result.reused else "are imported as"
        st.success(f"The scores {said} run {result.run_id}: open **Performance**, **Penalties**, **Experts**, "
                   "**Compare** or **Report** to evaluate them.", icon=":material/check_circle:")
