"""Compare runs by subgroup: each selected run's AUC (DeLong), sensitivity and specificity per subgroup of one test-set
column, on the images every run scored (core.report.subgroups.run_subgroup_aucs). User text (column names, values,
run names) is shown in dataframes or through widgets.plain, never as HTML."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.tasks import BinaryView
from core.errors import InputError
from core.store import Workspace
from dashboard.downloads import table_download
from dashboard.widgets import plain, show_error


@st.cache_data(show_spinner="Computing each run's AUC per subgroup...", max_entries=16)
def _run_subgroups(sources: tuple, view: BinaryView, column: str, values: tuple) -> pd.DataFrame:
    from core.report.subgroups import run_subgroup_aucs
    from dashboard.evaluation import aligned_runs

    aligned = aligned_runs(sources)
    return run_subgroup_aucs(aligned.task, aligned.truth, aligned.probabilities, aligned.calls, list(values), column,
                             view=view)


def aligned_subgroup_values(ws: Workspace, record: dict, sources: tuple, image_ids, column: str) -> list:
    """The column's value for each of `image_ids` (the runs' shared images), read once per test set and column
    through the Performance page's cache (dashboard.performance_sections.subgroup_column_values)."""
    from dashboard.common import load_predictions
    from dashboard.performance_sections import subgroup_column_values

    file = sources[0][1]
    values = subgroup_column_values(str(ws.root), str(record["id"]), str(record.get("fingerprint")), file, column)
    by_id = dict(zip(load_predictions(file)[0]["image_id"].astype(str), values))
    return [by_id.get(str(i)) for i in image_ids]


def pivot_auc(table: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """One row per subgroup (its images, positives / negatives), one column per run: 'AUC (low-high)', small groups
    marked."""
    from core.plots.experts import interval_text

    out = []
    for value, rows in table.groupby("subgroup", sort=False):
        first = rows.iloc[0]
        record = {"subgroup": value, "images": int(first["images"]),
                  "positives / negatives": f"{int(first['positives']):,} / {int(first['negatives']):,}",
                  "small": "yes" if bool(first["small"]) else ""}
        by_run = rows.set_index("run")
        for run in runs:
            if run in by_run.index:
                r = by_run.loc[run]
                record[f"AUC: {run}"] = interval_text(r["auc"], r["auc_low"], r["auc_high"], digits=3)
        out.append(record)
    return pd.DataFrame(out)



def subgroup_dataset(ws: Workspace, record: dict | None):
    """The registered test set whose subgroup columns a section offers, or None after saying why there is none
    (not registered; cannot be read)."""
    from dashboard.common import registered_dataset

    if record is None:
        st.info("This test set is not in the workspace's registry, so its subgroup columns are unknown.")
        return None
    try:
        return registered_dataset(ws, record)
    except InputError as exc:
        show_error("The test set cannot be read, so its subgroups are unknown:", exc)
        return None

def compare_subgroups_section(ws: Workspace, test_set_id: str, sources: tuple, image_ids, view: BinaryView) -> None:
    """A column picker, then each run's AUC per subgroup (the table) and the full numbers as CSV."""
    from core.metrics.subgroups import SMALL_GROUP
    from core.report.subgroups import available_subgroup_columns

    record = ws.get_dataset(test_set_id)
    ds = subgroup_dataset(ws, record)
    if ds is None:
        return
    column = st.selectbox("Split the test set by", available_subgroup_columns(ds), key="cmp_subgroup_column",
                          help="A column of the test set (a manifest's extra column or a DICOM header), or an image "
                               "property from the audit's scan (numbers with many values are cut into quartiles).")
    try:
        values = aligned_subgroup_values(ws, record, sources, image_ids, column)
        table = _run_subgroups(sources, view, column, tuple(values))
    except InputError as exc:
        show_error("The runs cannot be compared per subgroup:", exc)
        return
    runs = [label for label, _, _ in sources]
    st.dataframe(pivot_auc(table, runs), hide_index=True, width="stretch", key="cmp_subgroup_table")
    table_download(table, f"compare-runs-by-{column}", key="cmp_subgroup_csv", label="AUC, sensitivity and "
                   "specificity per run and subgroup (CSV)")
    st.caption(f"AUC of **{plain(view.name)}** per subgroup of {plain(column)} with DeLong's 95% interval, on the "
               f"images every selected run scored. Small: fewer than {SMALL_GROUP} positive or negative images (read "
               "the interval, not the point). The CSV adds each run's sensitivity and specificity of its own calls "
               "(Wilson) and the Holm-adjusted p of each subgroup against the rest.")
