"""The report's figures, drawn by core.plots from the numbers stored in the report dict (nothing recomputed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.metrics import ConfusionMatrix, Interval, ReliabilityBins, RocCurve
from core.plots import (PointMarker, ReliabilitySeries, RocSeries, class_colors, confusion_figure,
                        count_change_figure, reliability_figure, roc_figure)
from core.plots.experts import lr_forest_figure, reader_roc_figure, weighted_error_figure
from core.plots.selective import risk_coverage_figure
from core.plots.subgroups import forest_figure
from core.report.format import number
from core.report.subgroups import report_subgroups, subgroup_key


@dataclass(frozen=True)
class ReportFigure:
    """A figure with the section it belongs to and the caption written under it."""

    key: str
    section: str
    figure: go.Figure
    caption: str = ""


# -- the JSON dict back into the plot builders' inputs ---------------------------------------------------------
def _float(value) -> float:
    """JSON numbers back to floats: null -> NaN, "inf"/"-inf" -> infinity."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _array(values) -> np.ndarray:
    return np.array([_float(v) for v in values or []], dtype=float)


def _interval(entry: dict | None) -> Interval | None:
    if not entry:
        return None
    return Interval(_float(entry.get("value")), _float(entry.get("low")), _float(entry.get("high")),
                    str(entry.get("method") or ""), entry.get("n"), float(entry.get("confidence") or 0.95),
                    str(entry.get("reason") or ""))


def _curve(entry: dict) -> RocCurve:
    return RocCurve(_array(entry["fpr"]), _array(entry["tpr"]), _array(entry.get("thresholds") or entry["fpr"]))


def _numeric_row(row: dict) -> dict:
    """A core.readers row with nulls and "inf" strings turned back into floats (text fields kept)."""
    text = {"reader_id", "kind", "view", "rule", "method", "reason", "ci_method", "lr_ci_method", "measure",
            "problem", "model_rule", "matched_on", "difference_method", "kappa_method", "lr_positive_reason",
            "lr_negative_reason"}
    return {k: (v if k in text else _float(v) if v is None or isinstance(v, (int, float, str)) else v)
            for k, v in row.items()}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([_numeric_row(r) for r in rows or []])


# -- one function per figure ---------------------------------------------------------------------------------
def class_roc(report: dict) -> ReportFigure | None:
    evaluation = report.get("evaluation") or {}
    classes = (report.get("task") or {}).get("classes") or []
    colors = class_colors(classes)
    series = [RocSeries(name, _curve(c["roc_curve"]), _interval(c.get("auc")), colors.get(name))
              for name, c in (evaluation.get("per_class") or {}).items() if c.get("roc_curve")]
    if not series:
        return None
    return ReportFigure("roc_classes", "discrimination", roc_figure(series, title="ROC per class (one vs rest)"),
                        "Each class against all others, scored by its own probability; AUC with DeLong interval.")


def view_roc(report: dict) -> ReportFigure | None:
    evaluation = report.get("evaluation") or {}
    default = ((report.get("task") or {}).get("binary_views") or [{}])[0].get("name")
    view = next((v for v in evaluation.get("binary_views") or [] if v.get("name") == default), None)
    if not view or not view.get("roc_curve"):
        return None
    points = []
    markers = {"threshold": ("score threshold", "circle"), "model_calls": ("model's class calls", "x")}
    for key, (name, symbol) in markers.items():
        p = (view.get("operating_points") or {}).get(key)
        if not p:
            continue
        sens, spec = _float(p["sensitivity"]["value"]), _float(p["specificity"]["value"])
        if math.isnan(sens) or math.isnan(spec):
            continue
        text = f"sensitivity {sens:.3f}<br>specificity {spec:.3f}" + (
            f"<br>threshold {_float(p['threshold']):.3f}" if "threshold" in p else "")
        points.append(PointMarker(name, 1.0 - spec, sens, text, symbol=symbol))
    figure = roc_figure([RocSeries(view["name"], _curve(view["roc_curve"]), _interval(view.get("auc")))], points,
                        title=f"ROC: {view['name']}")  # base_layout escapes titles
    positive = ", ".join(view.get("positive") or [])
    return ReportFigure("roc_view", "discrimination", figure,
                        f"Positive: {positive}; score = summed probability of the positive classes. The circle marks "
                        "the score threshold, the cross the model's own class calls.")


def confusion(report: dict) -> ReportFigure | None:
    body = (report.get("evaluation") or {}).get("confusion")
    if not body:
        return None
    matrix = ConfusionMatrix(tuple(body["classes"]), np.asarray(body["counts"], dtype=np.int64))
    return ReportFigure("confusion", "confusion", confusion_figure(matrix, clickable=False,
                                                                  title="Confusion matrix"),
                        "Counts in the cells; colour and percentage = share of the true class (row).")


def calibration(report: dict) -> ReportFigure | None:
    body = ((report.get("evaluation") or {}).get("calibration") or {}).get("top_label")
    if not body:
        return None
    bins = ReliabilityBins(_array(body["edges"]), np.asarray(body["counts"], dtype=np.int64),
                           _array(body["mean_predicted"]), _array(body["observed"]), _float(body["ece"]),
                           _float(body.get("mce")))
    return ReportFigure("calibration", "calibration",
                        reliability_figure([ReliabilitySeries("most probable class", bins)],
                                           title="Calibration of the top-class probability"),
                        "How often the most probable class was right, against its probability (10 bins).")


def tiers(report: dict) -> ReportFigure | None:
    body = ((report.get("evaluation") or {}).get("referral") or {}).get("tiers")
    if not body:
        return None
    matrix = ConfusionMatrix(tuple(body["classes"]), np.asarray(body["counts"], dtype=np.int64))
    figure = confusion_figure(matrix, clickable=False, title="Referral tiers", x_title="Tier of the model's call",
                              y_title="True tier")
    return ReportFigure("tiers", "tiers", figure, "Rows = the tier the true class belongs to.")


def penalty_change(report: dict) -> ReportFigure | None:
    body = (report.get("evaluation") or {}).get("penalty")
    if not body or not (report.get("options") or {}).get("include_penalties", True):
        return None
    classes = (report.get("task") or {}).get("classes") or []
    change = np.asarray(body["min_penalty"]["confusion"], float) - np.asarray(body["argmax"]["confusion"], float)
    return ReportFigure("penalty_change", "penalties",
                        count_change_figure(change, classes, title="Penalty-minimising rule vs most probable class"),
                        "Images moving into (+) or out of (-) each cell when the penalty-minimising rule replaces "
                        "the most probable class.")


def readers(report: dict) -> list[ReportFigure]:
    body = report.get("readers") or {}
    if not body.get("included"):
        return []
    roc = dict(body["roc"])
    roc.update(fpr=_array(roc["fpr"]), tpr=_array(roc["tpr"]), auc=_interval(roc.get("auc")))
    out = [ReportFigure("readers_roc", "readers",
                        reader_roc_figure(roc, _frame(body.get("points")), _numeric_row(body.get("model") or {})),
                        "Crosshairs: Wilson intervals of sensitivity and of 1 - specificity. Diamonds are simulated "
                        "readers; the cross is the model at the report's threshold.")]
    if body.get("lr"):
        out.append(ReportFigure("readers_lr", "readers", lr_forest_figure(_frame(body["lr"])),
                                "Likelihood ratios with their intervals; a ratio that is 0, infinite or undefined is "
                                "written in its row."))
    if body.get("weighted_error"):
        out.append(ReportFigure("readers_weighted", "readers", weighted_error_figure(_frame(body["weighted_error"])),
                                "Hatched bars: the model on exactly the images each reader graded."))
    return out


def subgroups(report: dict) -> list[ReportFigure]:
    """A forest plot of the AUC per subgroup column, for the report's Subgroups section."""
    figures = []
    for column, rows, tests in report_subgroups(report):
        body = {"rows": rows, "overall": tests.get("overall") or {}, "small_group": tests.get("small_group"),
                "confidence": tests.get("confidence", 0.95)}
        figures.append(ReportFigure(subgroup_key(column), "subgroups",
                                    forest_figure(body, "auc", title=f"AUC by {column}"),
                                    "One row per subgroup with its DeLong interval; the dashed line is the whole "
                                    "test set's AUC; hollow markers are small subgroups."))
    return figures


def risk_coverage(report: dict) -> ReportFigure | None:
    body = report.get("referrals") or {}
    curve = body.get("curve")
    if not body.get("included") or not curve:
        return None
    band = body.get("band") or {}
    point = (_float((body.get("coverage") or {}).get("value")), _float((body.get("error_among_calls") or {}).get("value")))
    figure = risk_coverage_figure(_array(curve["coverage"]), _array(curve["error"]),
                                  target=_float(band.get("target_error")) if band else None, band_point=point,
                                  band_label="the model's referral band", title="Refer when unsure: risk vs coverage")
    return ReportFigure("risk_coverage", "summary", figure,
                        f"Each point is a band of another width around the threshold {number(body.get('threshold'), 3)} "
                        f"on \u201c{body.get('view')}\u201d, on this test set: the wider the band, the fewer cases "
                        "called and the fewer errors among them. The circle is the model's own band.")


def referral_confusion(report: dict) -> ReportFigure | None:
    body = report.get("referrals") or {}
    if not body.get("included") or not body.get("confusion"):
        return None
    conf = body["confusion"]
    matrix = ConfusionMatrix(tuple(conf["classes"]), np.asarray(conf["calls"], dtype=np.int64))
    figure = confusion_figure(matrix, clickable=False, title="Calls made and referrals",
                              referred=np.asarray(conf["referred"], dtype=np.int64))
    return ReportFigure("referral_confusion", "summary", figure,
                        "Rows = true class; the last column counts the images referred to a reader; the "
                        "percentage is the share of the true class (row).")


def report_figures(report: dict) -> list[ReportFigure]:
    """Every figure that applies to this report, in reading order."""
    found = [build(report) for build in (risk_coverage, referral_confusion, class_roc, view_roc, confusion,
                                         calibration, tiers, penalty_change)]
    return [f for f in found if f is not None] + subgroups(report) + readers(report)
