"""Subgroups of a predictions table: the subgroup columns of the test set the table names (a manifest's extra
columns, core.data.dataset.Dataset.subgroup_columns, and image properties from the audit's scan, binned), joined
onto the predictions by image id, and the analysis of each column (core.metrics.subgroups) on the binary view the
model's calls were made on. The predictions table's contract is unchanged: the join happens here, at evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.data.dataset import Dataset
from core.data.tasks import Task
from core.errors import InputError
from core.infer.predictions import check_predictions, patient_ids, predicted_indices, probabilities
from core.metrics.dashboard import available_views
from core.metrics.headline import HEADLINE_RESAMPLES, HEADLINE_SEED
from core.metrics.model_operating_point import ModelOperatingPoint
from core.metrics.multiclass import class_indices
from core.metrics.referral import binary_view_data
from core.metrics.subgroups import SubgroupTable, subgroup_labels, subgroup_order, subgroup_table

# Derived subgroups: the audit scan's image properties (core.audit.scan.SCAN_COLUMNS), under these names. Numeric
# ones are cut into quantile bins by core.metrics.subgroups.subgroup_labels.
IMAGE_PROPERTIES = {"image width": "width", "image height": "height", "image aspect": "aspect",
                    "JPEG quality": "jpeg_quality", "bit depth": "bit_depth", "file format": "file_format"}


def predictions_test_set(meta: dict, workspace: str | Path | None = None, data: str | Path | None = None) -> Dataset:
    """The test set a predictions table names: `data` when given, else the registered test set of its `dataset_id`
    in the workspace, else its recorded source (and split). InputError when none of them can be read."""
    from core.data.loading import load_dataset
    from core.store import Workspace

    if data is not None:
        return load_dataset(data, None, skip_bad=True)
    dataset_id = str(meta.get("dataset_id") or "")
    root = Workspace.locate(workspace)
    if dataset_id and (root / "registry.sqlite").is_file():
        from core.data.ingest import load_registered

        ws = Workspace.open(root)
        if ws.get_dataset(dataset_id) is not None:
            return load_registered(ws, dataset_id, skip_bad=True)
    source = meta.get("source")
    if source and Path(str(source)).exists():
        ds = load_dataset(str(source), None, skip_bad=True)
        return ds.split_named(meta["split"]) if meta.get("split") else ds
    raise InputError(f"the test set these predictions name ({dataset_id or 'no id recorded'}) is not registered in "
                     f"workspace {root} and its source ({source or 'not recorded'}) cannot be read: give the test "
                     "set's folder or manifest with --data PATH")


def available_subgroup_columns(ds: Dataset) -> list[str]:
    """The columns a test set can be split by: its own (manifest) columns, then the derived image properties."""
    own = ds.subgroup_columns()
    return own + [name for name in IMAGE_PROPERTIES if name not in own]


def subgroup_values(frame: pd.DataFrame, ds: Dataset, columns) -> pd.DataFrame:
    """One row per predictions row (same order), one column per requested subgroup column, joined by image id.
    An unknown column is refused naming the ones available; images the test set does not hold get no value."""
    columns = list(dict.fromkeys(str(c) for c in columns))
    available = available_subgroup_columns(ds)
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise InputError(f"no subgroup column {unknown[0]!r} in this test set; available: {', '.join(available)}")
    positions = [ds.row_of(image_id) for image_id in frame["image_id"].astype(str)]
    if all(p is None for p in positions):
        raise InputError("none of the predictions' image ids is in the test set: is it the test set these "
                         "predictions were made on?")
    out = pd.DataFrame(index=frame.index)
    own = set(ds.subgroup_columns())
    scans: dict[int, dict] = {}
    for column in columns:
        if column in own:
            values = ds.table[column]
            out[column] = [values.iat[p] if p is not None else None for p in positions]
            continue
        from core.audit.scan import scan_image

        for p in positions:
            if p is not None and p not in scans:
                scans[p] = scan_image(ds, p)
        key = IMAGE_PROPERTIES[column]
        out[column] = [scans[p].get(key) if p is not None else None for p in positions]
    return out


def subgroup_view(task: Task, meta: dict | None = None):
    """The binary view the model's calls were made on (its operating point's view), else the task's first view."""
    point = ModelOperatingPoint.from_dict((meta or {}).get("operating_point"), "predictions metadata")
    if point is not None:
        return point.binary_view
    views = available_views(task)
    if not views:
        raise InputError(f"task {task.name!r} has no binary view to analyse subgroups on")
    return views[0]


def subgroup_tables(frame: pd.DataFrame, task: Task, values: pd.DataFrame, *, view=None, penalty=None,
                    bootstrap: int = HEADLINE_RESAMPLES, seed: int = HEADLINE_SEED,
                    confidence: float = 0.95) -> dict[str, SubgroupTable]:
    """core.metrics.subgroups.subgroup_table for each column of `values` (aligned with `frame`'s rows) on `view`
    (default: the model's calls' view): AUC of the view's score, sensitivity and specificity of the model's calls,
    weighted error of those images under `penalty` (default the task's)."""
    if task.kind == "multilabel":
        raise InputError("subgroup analysis needs a single-label task; this one is multi-label")
    check_predictions(frame, task)
    return subgroup_tables_of(task, class_indices(frame["label"], task.classes), probabilities(frame, task),
                              predicted_indices(frame, task), values, view=view or subgroup_view(task),
                              penalty=penalty, patient_ids=patient_ids(frame), bootstrap=bootstrap, seed=seed,
                              confidence=confidence)


def subgroup_tables_of(task: Task, truth, probs, calls, values: pd.DataFrame, *, view, penalty=None,
                       patient_ids=None, bootstrap: int = HEADLINE_RESAMPLES, seed: int = HEADLINE_SEED,
                       confidence: float = 0.95) -> dict[str, SubgroupTable]:
    """subgroup_tables on arrays (class indices, probabilities, the calls to judge), e.g. the Performance page's
    calls at its operating point."""
    if task.kind == "multilabel":
        raise InputError("subgroup analysis needs a single-label task; this one is multi-label")
    truth, probs, calls = np.asarray(truth), np.asarray(probs, dtype=float), np.asarray(calls)
    if len(values) != truth.shape[0]:
        raise InputError(f"{len(values)} subgroup rows for {truth.shape[0]} predictions")
    data = binary_view_data(truth, probs, task.classes, view, y_pred=calls)
    if data.truth.size == 0:
        raise InputError(f"no test images belong to the classes of view {view.name!r}")
    matrix = task.penalty() if penalty is None else np.asarray(penalty, dtype=float)
    rows = data.rows
    return {str(column): subgroup_table(
        str(column), values[column].to_numpy(dtype=object)[rows], data.truth, data.scores, data.calls,
        truth=truth[rows], probabilities=probs[rows], calls=calls[rows], penalty=matrix,
        patient_ids=None if patient_ids is None else np.asarray(patient_ids, dtype=object)[rows],
        n_resamples=int(bootstrap), seed=seed, confidence=confidence) for column in values.columns}


# Readers against the model per subgroup: the differences are model minus reader on the same cases, with paired
# intervals (core.readers.compare), one per subgroup and reader, not adjusted for their number.
READER_SUBGROUP_NOTE = ("each reader against the model on the cases the reader graded in the subgroup, the model at "
                        "the page's threshold; differences are model minus reader with paired 95% intervals "
                        "(Newcombe), one per subgroup and reader and not adjusted for their number: read a "
                        "difference as clear only when its interval excludes 0")


def _verdict(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not estimable"
    return "model higher" if low > 0 else "reader higher" if high < 0 else "no clear difference"


def reader_subgroup_table(readings: pd.DataFrame, frame: pd.DataFrame, task: Task, values, *, view,
                          threshold: float, penalty=None, confidence: float = 0.95) -> pd.DataFrame:
    """Is the model better than the readers in every subgroup? For each subgroup of `values` (one per predictions
    row, grouped as core.metrics.subgroups.subgroup_labels groups them, in its order) and each reader who graded
    cases of it: core.readers.compare_readers_to_model on that subgroup's predictions and readings. One row per
    subgroup and reader: cases of the view graded, positives / negatives, the reader's and the model's
    sensitivity and specificity on those cases (Wilson), the paired differences (model minus reader) and which
    side each interval favours; `problem` says why a row has no comparison."""
    from core.readers import compare_readers_to_model

    labels, _ = subgroup_labels(values)
    if len(labels) != len(frame):
        raise InputError(f"{len(labels)} subgroup values for {len(frame)} predictions")
    ids = frame["image_id"].astype(str).to_numpy()
    reading_ids = readings["image_id"].astype(str)
    rows = []
    for value in subgroup_order(labels):
        mask = labels == value
        graded = readings[reading_ids.isin(set(ids[mask])).to_numpy()]
        if graded.empty:
            continue
        try:
            compare = compare_readers_to_model(graded, frame[mask].reset_index(drop=True), task, view,
                                               threshold=threshold, penalty=penalty, confidence=confidence)
        except InputError as exc:
            rows.append({"subgroup": value, "reader": "", "problem": str(exc)})
            continue
        for r in compare.to_dict("records"):
            row = {"subgroup": value, "reader": r["reader_id"], "kind": r["kind"], "images": int(r["n_view"]),
                   "positives": int(r["tp"] + r["fn"]), "negatives": int(r["fp"] + r["tn"])}
            for name in ("sensitivity", "specificity"):
                for who, prefix in (("reader", ""), ("model", "model_")):
                    for end in ("", "_low", "_high"):
                        row[f"{who} {name}{end}"] = r.get(f"{prefix}{name}{end}", np.nan)
                difference = [r.get(f"{name}_difference{end}", np.nan) for end in ("", "_low", "_high")]
                row.update({f"{name} difference": difference[0], f"{name} difference_low": difference[1],
                            f"{name} difference_high": difference[2],
                            f"{name}: who is higher": _verdict(difference[1], difference[2])})
            row["problem"] = r.get("problem") or ""
            rows.append(row)
    if not rows:
        raise InputError("no reader graded a case of this test set's subgroups")
    return pd.DataFrame(rows)


def run_subgroup_aucs(task: Task, truth, probabilities: dict, calls: dict, values, column: str, *, view,
                      confidence: float = 0.95) -> pd.DataFrame:
    """Several runs on the same images (core.metrics.run_compare.AlignedRuns' truth, probabilities and calls by run
    name; `values` one per image): per run and subgroup, the AUC of the view's score with DeLong's interval, its
    Holm-adjusted p against the rest of the test set, the sensitivity and specificity of the run's calls (Wilson)
    and the `small` flag (core.metrics.subgroups.subgroup_table, without the bootstrap of weighted error)."""
    truth = np.asarray(truth)
    values = np.asarray(values, dtype=object)
    if len(values) != truth.shape[0]:
        raise InputError(f"{len(values)} subgroup values for {truth.shape[0]} images")
    records = []
    for run, probs in probabilities.items():
        data = binary_view_data(truth, np.asarray(probs, dtype=float), task.classes, view,
                                y_pred=np.asarray(calls[run]))
        if data.truth.size == 0:
            raise InputError(f"no test images belong to the classes of view {view.name!r}")
        table = subgroup_table(column, values[data.rows], data.truth, data.scores, data.calls,
                               confidence=confidence)
        for row in table.rows:
            records.append({"run": run, "subgroup": row.value, "images": row.n, "positives": row.n_positive,
                            "negatives": row.n_negative, "auc": row.auc.value, "auc_low": row.auc.low,
                            "auc_high": row.auc.high, "auc_p_holm": row.auc_p_adjusted,
                            "sensitivity": row.sensitivity.value, "sensitivity_low": row.sensitivity.low,
                            "sensitivity_high": row.sensitivity.high, "specificity": row.specificity.value,
                            "specificity_low": row.specificity.low, "specificity_high": row.specificity.high,
                            "small": row.small})
    return pd.DataFrame(records)


# A derived run (core/infer/recalibrate.py: card key `derived_from`) made by these steps moves the model's calls.
SHIFT_CARD_KEYS = {"adaptation": "adapted to the site", "recalibration": "recalibrated"}


def shift_source(card: dict | None) -> tuple[str, str] | None:
    """(source run id, what was done) when a run's model card says it is an adapted or recalibrated run, else None."""
    card = card or {}
    source = (card.get("derived_from") or {}).get("run_id") if isinstance(card.get("derived_from"), dict) else None
    done = next((text for key, text in SHIFT_CARD_KEYS.items() if card.get(key)), None)
    return (str(source), done) if source and done else None


def _own_calls_table(frame: pd.DataFrame, task: Task, values, column: str, view) -> tuple[SubgroupTable, pd.Series]:
    """The subgroups of one predictions table at its own calls (no bootstrap), and each in-view image's call
    (positive side or not) by image id."""
    check_predictions(frame, task)
    data = binary_view_data(class_indices(frame["label"], task.classes), probabilities(frame, task), task.classes,
                            view, y_pred=predicted_indices(frame, task))
    if data.truth.size == 0:
        raise InputError(f"no test images belong to the classes of view {view.name!r}")
    table = subgroup_table(column, np.asarray(values, dtype=object)[data.rows], data.truth, data.scores, data.calls)
    called = pd.Series(np.asarray(data.calls, dtype=bool), index=frame["image_id"].astype(str).to_numpy()[data.rows])
    return table, called


def before_after_subgroups(before: pd.DataFrame, after: pd.DataFrame, task: Task, column: str, before_values,
                           after_values, *, view) -> pd.DataFrame:
    """The calls per subgroup under shift: a source run's and its adapted (or recalibrated) run's predictions on the
    same test set, each at its own calls (the stored `predicted` column: its operating point). One row per subgroup:
    images, sensitivity and specificity before and after (Wilson), the change of each point, and how many of the
    subgroup's images (scored by both) changed side."""
    table_before, calls_before = _own_calls_table(before, task, before_values, column, view)
    table_after, calls_after = _own_calls_table(after, task, after_values, column, view)
    labels, _ = subgroup_labels(np.asarray(after_values, dtype=object))
    label_of = dict(zip(after["image_id"].astype(str), labels))
    shared = calls_before.index.intersection(calls_after.index)
    moved = pd.Series(calls_before[shared].to_numpy() != calls_after[shared].to_numpy(), index=shared)
    rows_before = {r.value: r for r in table_before.rows}
    records = []
    for row in table_after.rows:
        old = rows_before.get(row.value)
        record = {"subgroup": row.value, "images": row.n, "positives": row.n_positive, "negatives": row.n_negative}
        for name in ("sensitivity", "specificity"):
            for when, source in (("before", old), ("after", row)):
                estimate = getattr(source, name) if source is not None else None
                record.update({f"{name} {when}": estimate.value if estimate else np.nan,
                               f"{name} {when}_low": estimate.low if estimate else np.nan,
                               f"{name} {when}_high": estimate.high if estimate else np.nan})
            record[f"{name} change"] = record[f"{name} after"] - record[f"{name} before"]
        in_group = [i for i in shared if label_of.get(i) == row.value]
        record["calls changed"] = int(moved[in_group].sum()) if in_group else 0
        record["small"] = row.small
        records.append(record)
    return pd.DataFrame(records)


def subgroups_json(tables: dict[str, SubgroupTable], view) -> tuple[dict, dict]:
    """The evaluation JSON's `subgroups` ({column: [row, ...]}) and `subgroup_tests` ({column: {view, overall,
    heterogeneity, correction, ...}})."""
    rows, tests = {}, {}
    for column, table in tables.items():
        body = table.to_dict()
        rows[column] = body.pop("rows")
        body.pop("column")
        tests[column] = {"view": view.name, "positive": list(view.positive), "negative": list(view.negative), **body}
    return rows, tests


def subgroup_rows_frame(table: SubgroupTable) -> pd.DataFrame:
    """The subgroup table as numbers, one row per subgroup (CSV download, the Performance page's table):
    each statistic with _low/_high, its gap to the rest with _low/_high, and the Holm-adjusted p-value."""
    records = []
    for row in table.rows:
        record = {"subgroup": row.value, "images": row.n, "positives": row.n_positive, "negatives": row.n_negative,
                  "small": row.small}
        for name in ("auc", "sensitivity", "specificity"):
            estimate, gap = getattr(row, name), getattr(row, f"{name}_gap")
            record.update({name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high,
                           f"{name}_gap": gap.value, f"{name}_gap_low": gap.low, f"{name}_gap_high": gap.high,
                           f"{name}_p_holm": getattr(row, f"{name}_p_adjusted")})
        if row.weighted_error is not None:
            record.update(weighted_error=row.weighted_error.value, weighted_error_low=row.weighted_error.low,
                          weighted_error_high=row.weighted_error.high)
        records.append(record)
    return pd.DataFrame(records)


# -- the stakeholder report's Subgroups section (reads the report dict; recomputes nothing) ----------------------
def report_subgroups(report: dict) -> list[tuple[str, list[dict], dict]]:
    """(column, rows, tests) of each subgroup column the report's evaluation holds, in its order."""
    evaluation = report.get("evaluation") or {}
    rows, tests = evaluation.get("subgroups") or {}, evaluation.get("subgroup_tests") or {}
    return [(column, rows[column], tests.get(column) or {}) for column in rows]


def subgroup_key(column: str) -> str:
    """The key a subgroup column's table and figure share in the report: subgroups-<column as a slug>."""
    return "subgroups-" + "".join(ch if ch.isalnum() else "-" for ch in str(column).lower())


def subgroup_report_tables(report: dict):
    """One core.report.format.Table per subgroup column: counts, AUC, sensitivity, specificity with intervals,
    each gap's Holm-adjusted p-value, the small flag; the heterogeneity tests and the correction in the note."""
    from core.metrics.intervals import p_value_text
    from core.report.format import Table, interval

    out = []
    for column, rows, tests in report_subgroups(report):
        notes: list[str] = []
        body = [[str(r["value"]), f"{int(r['n']):,}", f"{int(r['n_positive']):,} / {int(r['n_negative']):,}",
                 interval(r.get("auc"), "number", notes), p_value_text(r.get("auc_p_adjusted")),
                 interval(r.get("sensitivity"), "proportion", notes), p_value_text(r.get("sensitivity_p_adjusted")),
                 interval(r.get("specificity"), "proportion", notes), p_value_text(r.get("specificity_p_adjusted")),
                 "small" if r.get("small") else ""] for r in rows]
        heterogeneity = "; ".join(f"{name} p{' ' if p_value_text(t.get('p_value')).startswith('<') else ' = '}"
                                  f"{p_value_text(t.get('p_value'))} ({t.get('method')})"
                                  for name, t in (tests.get("heterogeneity") or {}).items())
        note = (f"View: {tests.get('view', '')}. p: each subgroup against the rest of the test set; "
                f"{tests.get('correction_text', '')}. Heterogeneity across the subgroups: {heterogeneity}. "
                f"Small: fewer than {tests.get('small_group', '')} positive or negative images: read the interval, "
                "not the point." + (f" Values binned: {tests['binned']}." if tests.get("binned") else ""))
        out.append(Table(subgroup_key(column), f"By {column}",
                         ["subgroup", "images", "positives / negatives", "AUC", "p (AUC)", "sensitivity",
                          "p (sens.)", "specificity", "p (spec.)", ""], body, note, footnotes=notes,
                         numeric_columns=[1, 4, 6, 8]))
    return out


def registered_subgroups(ws, test_set_id: str, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The registered test set's own subgroup columns (never the image properties: they need every image read)
    joined onto `frame`; None when it has none or cannot be read (the report then has no Subgroups section)."""
    from core.data.ingest import load_registered

    try:
        ds = load_registered(ws, test_set_id, skip_bad=True)
    except InputError:
        return None
    columns = ds.subgroup_columns()
    return subgroup_values(frame, ds, columns) if columns else None
