"""Readers against the truth and against the model: per-reader metrics, model operating points, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.data.tasks import BinaryView, Task, get_task
from core.errors import InputError
from core.infer.predictions import predicted_indices, probability_columns
from core.metrics import (BinaryScores, Interval, OperatingPoint, binary_view_data, class_indices, cohen_kappa,
                          confusion_matrix, counts_from_labels, diagnostic_metrics, mcnemar_test, proportion_ci,
                          weighted_error)
from core.metrics.intervals import check_confidence
from core.readers.readings import REQUIRED_READING_COLUMNS, is_simulated

DEFAULT_THRESHOLD = 0.5
MATCH_RULES = (None, "sensitivity", "specificity")
PAIRED_DIFFERENCE_METHOD = "Newcombe square-and-add, paired (1998 method 10)"
_RATES = ("sensitivity", "specificity", "ppv", "npv", "lr_positive", "lr_negative")


def resolve_view(task: Task, view: str | BinaryView | None = None) -> BinaryView:
    """The binary view by name (default: the task's first, e.g. urgent referral vs rest)."""
    if isinstance(view, BinaryView):
        return view
    if view is None:
        chosen = task.default_view()
        if chosen is None:
            raise InputError(f"task {task.name!r} has no binary view (e.g. urgent referral vs rest)")
        return chosen
    return task.view(view)


def truth_labels(truth, task: Task) -> pd.Series:
    """Truth as a Series image_id -> class name, from a predictions table, a Dataset or a mapping."""
    table = getattr(truth, "table", truth)
    if isinstance(table, pd.DataFrame):
        if not {"image_id", "label"} <= set(table.columns):
            raise InputError("the truth table needs image_id and label columns")
        series = pd.Series(table["label"].to_numpy(), index=table["image_id"].astype(str))
    else:
        series = pd.Series(dict(table))
        series.index = series.index.astype(str)
    if series.index.duplicated().any():
        raise InputError("the truth table lists an image more than once")
    return canonical_labels(series, task)


def is_in(values, allowed) -> np.ndarray:
    """Boolean membership mask. Goes through object arrays: pandas 3's Arrow-string `isin` loops in Python,
    seconds on a 100,000-row test set."""
    allowed = np.asarray(list(allowed) if isinstance(allowed, (tuple, list, set)) else allowed, dtype=object)
    return pd.Index(np.asarray(values, dtype=object), dtype=object).isin(allowed)


def canonical_labels(labels: pd.Series, task: Task) -> pd.Series:
    """Class names for raw labels, looking up each distinct value once (tables can hold 100,000 rows)."""
    lookup = {value: task.canonical_label(value) for value in pd.unique(labels)}
    return labels.map(lookup)


def normalised_readings(readings: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Readings with string ids, class-name labels (any case or alias accepted) and a seconds column."""
    missing = [c for c in REQUIRED_READING_COLUMNS if c not in readings.columns]
    if missing:
        raise InputError(f"readings need columns {', '.join(REQUIRED_READING_COLUMNS)}; missing {missing}")
    out = readings.copy()
    out["image_id"] = out["image_id"].astype(str)
    out["reader_id"] = out["reader_id"].astype(str)
    out["label"] = canonical_labels(out["label"], task)  # readings built by hand may say "cnv"
    if "seconds" not in out.columns:
        out["seconds"] = math.nan
    return out


def _flat(name: str, interval: Interval) -> dict:
    return {name: interval.value, f"{name}_low": interval.low, f"{name}_high": interval.high}


def paired_difference_ci(both: int, first_only: int, second_only: int, neither: int,
                         confidence: float = 0.95) -> Interval:
    """Interval for p1 - p2, two proportions measured on the same cases (p1 = (both + first_only) / n,
    p2 = (both + second_only) / n): Newcombe's square-and-add method from the two Wilson intervals with
    the continuity-corrected correlation (Newcombe 1998, method 10; Fagerland, Lydersen & Laake 2017)."""
    level = check_confidence(confidence)
    n = both + first_only + second_only + neither
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, PAIRED_DIFFERENCE_METHOD, n=0, confidence=level,
                        reason="no cases to compare on")
    first = proportion_ci(both + first_only, n, "wilson", level)
    second = proportion_ci(both + second_only, n, "wilson", level)
    margins = [(both + first_only), (second_only + neither), (both + second_only), (first_only + neither)]
    phi = 0.0
    if min(margins) > 0:
        # phi: correlation of the two proportions; (ad - bc) shrunk by n/2 when positive (Newcombe 1998).
        cross = both * neither - first_only * second_only
        numerator = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = numerator / math.sqrt(math.prod(margins))
    p1, p2 = first.value, second.value
    d1, u1 = p1 - first.low, first.high - p1
    d2, u2 = p2 - second.low, second.high - p2
    low = (p1 - p2) - math.sqrt(max(d1 * d1 - 2 * phi * d1 * u2 + u2 * u2, 0.0))
    high = (p1 - p2) + math.sqrt(max(u1 * u1 - 2 * phi * u1 * d2 + d2 * d2, 0.0))
    return Interval(p1 - p2, max(low, -1.0), min(high, 1.0), PAIRED_DIFFERENCE_METHOD, n=n, confidence=level)


def _binary_rows(dm) -> dict:
    row = {**dm.counts(), "n_view": dm.n}
    for name in _RATES:
        row.update(_flat(name, getattr(dm, name)))
    reasons = [getattr(dm, name).reason for name in _RATES if getattr(dm, name).reason]
    row["ci_method"] = dm.sensitivity.method
    row["lr_ci_method"] = dm.lr_positive.method
    row["reason"] = "; ".join(reasons)
    # The forest plot labels each likelihood ratio with its own reason when its interval is degenerate.
    row["lr_positive_reason"], row["lr_negative_reason"] = dm.lr_positive.reason, dm.lr_negative.reason
    return row


def _reader_row(reader: str, graded: pd.DataFrame, task: Task, view: BinaryView, penalty: np.ndarray,
                n_in_set: int, confidence: float, ci: str, lr_ci: str) -> dict:
    """graded: one reader's rows with a `truth` column (cases without truth already dropped)."""
    confusion = confusion_matrix(graded["truth"].to_numpy(), graded["label"].to_numpy(), task.classes)
    in_view = is_in(graded["truth"], view.positive + view.negative)
    positive_truth = is_in(graded.loc[in_view, "truth"], view.positive)
    # A reader's call is positive when their label is in the view's positive group, negative otherwise.
    positive_call = is_in(graded.loc[in_view, "label"], view.positive)
    dm = diagnostic_metrics(*counts_from_labels(positive_truth, positive_call), confidence=confidence, ci=ci,
                            lr_ci=lr_ci)
    accuracy = proportion_ci(int(np.trace(confusion.counts)), confusion.n, ci, confidence)
    row = {"reader_id": reader, "kind": "simulated reader" if is_simulated(reader) else "reader",
           "view": view.name, "n_graded": len(graded), "n_in_set": n_in_set,
           "coverage": len(graded) / n_in_set if n_in_set else math.nan, "partial": len(graded) < n_in_set}
    row.update(_binary_rows(dm))
    row.update(_flat("accuracy", accuracy))
    row["weighted_error"] = weighted_error(confusion.counts, penalty)
    row["median_seconds"] = float(graded["seconds"].median()) if graded["seconds"].notna().any() else math.nan
    return row


def _penalty(task: Task, penalty) -> np.ndarray:
    return task.penalty() if penalty is None else np.asarray(penalty, dtype=float)


def reader_metrics(readings: pd.DataFrame, truth, task: str | Task, view: str | BinaryView | None = None,
                   penalty=None, lr_ci: str = "log", confidence: float = 0.95, ci: str = "wilson",
                   n_in_set: int | None = None) -> pd.DataFrame:
    """One row per reader: coverage, the binary view's 2x2 counts, sensitivity/specificity/PPV/NPV and LR+/LR-
    with intervals, multi-class accuracy and weighted error (penalty matrix, default the task's). Readers are
    analysed on the cases they graded that have a truth."""
    task = get_task(task)
    view = resolve_view(task, view)
    truth = truth_labels(truth, task)
    readings = normalised_readings(readings, task)
    readings = readings.assign(truth=readings["image_id"].map(truth)).dropna(subset=["truth"])
    if readings.empty:
        raise InputError("none of the readings' images are in the truth table (readings of another test set?)")
    n_in_set = len(truth) if n_in_set is None else int(n_in_set)
    penalty = _penalty(task, penalty)
    rows = [_reader_row(reader, group, task, view, penalty, n_in_set, confidence, ci, lr_ci)
            for reader, group in readings.groupby("reader_id", sort=True)]
    return pd.DataFrame(rows)


class ModelView:
    """The model's predictions seen through one binary view: truth, score and multi-class call per case."""

    def __init__(self, predictions: pd.DataFrame, task: Task, view: BinaryView):
        columns = probability_columns(task)
        missing = [c for c in ["image_id", "label", *columns] if c not in predictions.columns]
        if missing:
            raise InputError(f"the predictions table is missing columns {missing}")
        classes = list(task.classes)
        truth = class_indices(canonical_labels(predictions["label"], task), classes)
        probs = predictions[columns].to_numpy(dtype=float)
        predicted = predicted_indices(predictions, task)
        data = binary_view_data(truth, probs, classes, view)
        self.view = view
        self.image_ids = predictions["image_id"].astype(str).to_numpy()
        self.labels = pd.Series(np.asarray(classes)[truth], index=self.image_ids)
        self.predicted = pd.Series(np.asarray(classes)[predicted], index=self.image_ids)
        self.table = pd.DataFrame({"positive": data.truth, "score": data.scores},
                                  index=pd.Index(self.image_ids[data.rows], name="image_id"))

    def scores(self, image_ids=None) -> BinaryScores:
        table = self.table if image_ids is None else self.table.loc[self.table.index.intersection(image_ids)]
        return BinaryScores(table["positive"].to_numpy(), table["score"].to_numpy())


def _operating_point(scores: BinaryScores, threshold, match_sensitivity, match_specificity) -> OperatingPoint:
    given = [x is not None for x in (threshold, match_sensitivity, match_specificity)]
    if sum(given) > 1:
        raise InputError("give one of threshold, match_sensitivity or match_specificity, not several")
    if match_sensitivity is not None:
        return scores.threshold_for_sensitivity(match_sensitivity)
    if match_specificity is not None:
        return scores.threshold_for_specificity(match_specificity)
    return scores.at_threshold(DEFAULT_THRESHOLD if threshold is None else threshold)


def model_operating_point(predictions: pd.DataFrame, task: str | Task, view: str | BinaryView | None = None,
                          threshold: float | None = None, *, match_sensitivity: float | None = None,
                          match_specificity: float | None = None, image_ids=None) -> OperatingPoint:
    """The model's binary operating point (score >= threshold is positive; default 0.5), or the threshold that
    reaches a given sensitivity (keeping specificity highest) or specificity (keeping sensitivity highest),
    e.g. a reader's. `image_ids` restricts it to the cases a reader graded."""
    task = get_task(task)
    model = ModelView(predictions, task, resolve_view(task, view))
    return _operating_point(model.scores(image_ids), threshold, match_sensitivity, match_specificity)


def model_roc(predictions: pd.DataFrame, task: str | Task, view: str | BinaryView | None = None,
              confidence: float = 0.95) -> dict:
    """The model's ROC curve for a binary view (fpr, tpr, thresholds) with its AUC (DeLong interval)."""
    task = get_task(task)
    view = resolve_view(task, view)
    scores = ModelView(predictions, task, view).scores()
    curve = scores.curve()
    return {"view": view.name, "fpr": curve.fpr, "tpr": curve.tpr, "thresholds": curve.thresholds,
            "auc": scores.auc(confidence), "n_positive": scores.n_positive, "n_negative": scores.n_negative}


def model_metrics(predictions: pd.DataFrame, task: str | Task, view: str | BinaryView | None = None,
                  threshold: float | None = None, *, match_sensitivity: float | None = None,
                  match_specificity: float | None = None, penalty=None, lr_ci: str = "log",
                  confidence: float = 0.95, ci: str = "wilson", image_ids=None) -> dict:
    """The model as one row in reader_metrics' layout (reader_id 'model'), at its operating point, on all
    cases or on `image_ids`. Weighted error and accuracy use the model's multi-class call (`predicted`)."""
    task = get_task(task)
    view = resolve_view(task, view)
    model = ModelView(predictions, task, view)
    point = _operating_point(model.scores(image_ids), threshold, match_sensitivity, match_specificity)
    dm = point.metrics(confidence=confidence, ci=ci, lr_ci=lr_ci)
    wanted = None if image_ids is None else set(map(str, image_ids))
    ids = model.image_ids if wanted is None else [i for i in model.image_ids if i in wanted]
    confusion = confusion_matrix(model.labels[ids].to_numpy(), model.predicted[ids].to_numpy(), task.classes)
    row = {"reader_id": "model", "kind": "model", "view": view.name, "n_graded": len(ids),
           "n_in_set": len(model.image_ids), "coverage": len(ids) / len(model.image_ids),
           "partial": len(ids) < len(model.image_ids), "threshold": point.threshold,
           "rule": f"score >= {point.threshold:g}" if point.rule == "threshold" else point.rule}
    row.update(_binary_rows(dm))
    row.update(_flat("accuracy", proportion_ci(int(np.trace(confusion.counts)), confusion.n, ci, confidence)))
    row["weighted_error"] = weighted_error(confusion.counts, _penalty(task, penalty))
    return row


def paired_comparison(reader_readings: pd.DataFrame, predictions: pd.DataFrame, task: str | Task,
                      view: str | BinaryView | None = None, threshold: float | None = None,
                      match: str | None = None, confidence: float = 0.95, penalty=None,
                      kappa_weights: str | None = None) -> dict:
    """One reader against the model on the same cases. The model's operating point is `threshold` (default
    0.5) or matched to the reader's `match` = "specificity" / "sensitivity" on these cases. Returns McNemar
    (exact and mid-p) on binary correctness, model-minus-reader differences in sensitivity and specificity
    with paired intervals, both weighted errors and Cohen's kappa between the reader's and the model's calls."""
    task = get_task(task)
    view = resolve_view(task, view)
    if match not in MATCH_RULES:
        raise InputError(f"match must be one of {MATCH_RULES}, got {match!r}")
    readings = normalised_readings(reader_readings, task)
    readers = readings["reader_id"].unique()
    if len(readers) != 1:
        raise InputError(f"paired_comparison takes one reader's readings, got {len(readers)} readers")
    model = ModelView(predictions, task, view)
    shared = readings[is_in(readings["image_id"], model.labels.index)].set_index("image_id")
    in_view = shared.index[is_in(shared.index, model.table.index)]
    if len(in_view) == 0:
        raise InputError(f"reader {readers[0]!r} graded no case of the view {view.name!r} that the model scored")
    truth = model.table.loc[in_view, "positive"].to_numpy()
    reader_call = is_in(shared.loc[in_view, "label"], view.positive)
    scores = model.scores(in_view)
    reader_sens = reader_call[truth].mean() if truth.any() else math.nan
    reader_spec = (~reader_call[~truth]).mean() if (~truth).any() else math.nan
    if match is not None and math.isnan(reader_sens if match == "sensitivity" else reader_spec):
        raise InputError(f"cannot match the reader's {match}: reader {readers[0]!r} graded no "
                         f"{'positive' if match == 'sensitivity' else 'negative'} case of {view.name!r}")
    point = _operating_point(scores, threshold if match is None else None,
                             reader_sens if match == "sensitivity" else None,
                             reader_spec if match == "specificity" else None)
    model_call = model.table.loc[in_view, "score"].to_numpy() >= point.threshold
    reader_right, model_right = reader_call == truth, model_call == truth
    b = int((reader_right & ~model_right).sum())
    c = int((~reader_right & model_right).sum())

    def _pairs(mask, positive: bool) -> Interval:
        m = model_call[mask] if positive else ~model_call[mask]
        r = reader_call[mask] if positive else ~reader_call[mask]
        return paired_difference_ci(int((m & r).sum()), int((m & ~r).sum()), int((~m & r).sum()),
                                    int((~m & ~r).sum()), confidence)

    ids = shared.index.to_numpy()
    penalty = _penalty(task, penalty)
    reader_confusion = confusion_matrix(model.labels[ids].to_numpy(), shared["label"].to_numpy(), task.classes)
    model_confusion = confusion_matrix(model.labels[ids].to_numpy(), model.predicted[ids].to_numpy(), task.classes)
    kappa = cohen_kappa(shared["label"].to_numpy(), model.predicted[ids].to_numpy(), weights=kappa_weights,
                        labels=task.classes, confidence=confidence)
    out = {"reader_id": readers[0], "view": view.name, "n_shared": len(ids), "n_view": len(in_view),
           "model_threshold": point.threshold,
           "model_rule": f"{point.rule} (the reader's)" if match else f"score >= {point.threshold:g}",
           "matched_on": match or "", "reader_sensitivity": reader_sens, "reader_specificity": reader_spec,
           "model_sensitivity": point.sensitivity, "model_specificity": point.specificity,
           "reader_only_correct": b, "model_only_correct": c,
           "mcnemar_exact_p": mcnemar_test(b, c, "exact").p_value,
           "mcnemar_mid_p": mcnemar_test(b, c, "mid_p").p_value}
    out.update(_flat("sensitivity_difference", _pairs(truth, True)))
    out.update(_flat("specificity_difference", _pairs(~truth, False)))
    out["difference_method"] = f"model minus reader; {PAIRED_DIFFERENCE_METHOD}"
    out["reader_weighted_error"] = weighted_error(reader_confusion.counts, penalty)
    out["model_weighted_error"] = weighted_error(model_confusion.counts, penalty)
    out.update(_flat("kappa", kappa.kappa))
    out["kappa_p"] = kappa.p_value
    out["kappa_method"] = kappa.kappa.method
    return out
