"""The report's "Refer when unsure" section: how many cases the model referred to a reader, the error of its calls
among those it made vs over every case, against the band's stated target, and the risk-coverage curve."""

from __future__ import annotations

import pandas as pd

from core.data.tasks import Task
from core.errors import InputError
from core.infer.predictions import has_referrals, predicted_indices, probabilities, referred_mask
from core.metrics import binary_view_data, class_indices, to_jsonable
from core.metrics.model_operating_point import operating_view
from core.metrics.multiclass import referral_confusion
from core.metrics.selective import ASSUMPTION, ReferralBand, risk_coverage_curve, selective_summary


def referrals_section(frame: pd.DataFrame, task: Task, band: dict | None = None, operating_point: dict | None = None,
                      confidence: float = 0.95) -> dict:
    """{"included": False, "reason"} when the table records no referrals; else the band, the counts, coverage
    and the operating view's error among the calls made and overall (Wilson), and the risk-coverage curve of
    this test set around the band's threshold."""
    if task.kind == "multilabel":
        return {"included": False, "reason": "referrals apply to single-label tasks"}
    if not has_referrals(frame):
        return {"included": False, "reason": "the model has no referral band, so every case was called (predictions "
                                             "without a 'referred' column)"}
    view = operating_view(task)
    if view is None:
        return {"included": False, "reason": "this task has no binary view deciding every case"}
    referred = referred_mask(frame)
    truth = class_indices(frame["label"], task.classes)
    probs = probabilities(frame, task)
    data = binary_view_data(truth, probs, task.classes, view, y_pred=predicted_indices(frame, task))
    summary = selective_summary(data.truth, data.calls, referred[data.rows], confidence)
    confusion = referral_confusion(truth, predicted_indices(frame, task), referred, task.classes)
    stored = ReferralBand.from_dict(band, source="predictions metadata") if band else None
    threshold = stored.threshold if stored is not None else (operating_point or {}).get("threshold")
    section = {"included": True, "view": view.name, "positive": list(view.positive), "negative": list(view.negative),
               "band": stored.to_dict() if stored else None, "assumption": ASSUMPTION,
               "confusion": {"classes": list(task.classes), "calls": confusion.calls.counts,
                             "referred": confusion.referred},
               **summary.to_dict()}
    if threshold is not None and data.truth.size:
        try:
            curve = risk_coverage_curve(data.truth, data.scores, float(threshold))
        except InputError as exc:
            section["curve_reason"] = str(exc)
        else:
            section["threshold"] = float(threshold)
            section["curve"] = {"width": curve.widths, "coverage": curve.coverage, "error": curve.error}
    return to_jsonable(section)
