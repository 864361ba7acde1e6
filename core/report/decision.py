"""The report's decision-curve numbers: net benefit at the report's threshold and at the penalty matrix's threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data.tasks import Task
from core.errors import InputError
from core.infer.predictions import probabilities
from core.metrics import binary_view_data, class_indices, to_jsonable
from core.metrics.decision_curve import decision_curve, penalty_threshold

DECISION_METHOD = "net benefit (Vickers & Elkin 2006) at the sample's prevalence"


def decision_section(frame: pd.DataFrame, task: Task, penalty, threshold: float) -> dict:
    """Net benefit of acting on the model's score in the task's default binary view, against treating everyone and
    no one, at the report's threshold and at the threshold the penalty matrix implies (cost FP / (FP + FN)).
    Says why when it does not apply."""
    view = task.default_view()
    if task.kind == "multilabel" or view is None:
        return {"included": False, "reason": "decision curves need one label per image and a binary view"}
    data = binary_view_data(class_indices(frame["label"], task.classes), probabilities(frame, task), task.classes,
                            view)
    truth = np.asarray(data.truth, dtype=bool)
    if truth.size == 0 or truth.all() or not truth.any():
        return {"included": False, "reason": f"the test set needs cases on both sides of {view.name!r}"}
    implied = penalty_threshold(penalty, task.classes, view.positive) if penalty is not None else None
    points = {"report": float(threshold)}
    if implied is not None:
        points["penalty"] = float(sum(implied) / 2.0)
    cuts = sorted(set(points.values()) | set(np.round(np.linspace(0.05, 0.95, 19), 2).tolist()))
    try:
        curve = decision_curve(truth, np.clip(np.asarray(data.scores, dtype=float), 0.0, 1.0), cuts)
    except InputError as exc:
        return {"included": False, "reason": str(exc)}
    rows = {float(r.threshold): r for r in curve.itertuples()}

    def at(t: float) -> dict:
        r = rows[t]
        return {"threshold": t, "net_benefit": r.net_benefit, "net_benefit_all": r.net_benefit_all,
                "net_benefit_none": 0.0, "net_interventions_avoided": r.net_interventions_avoided,
                "tp_rate": r.tp_rate, "fp_rate": r.fp_rate}

    return to_jsonable({
        "included": True, "view": view.name, "positive": list(view.positive), "n": int(truth.size),
        "prevalence": float(truth.mean()), "method": DECISION_METHOD,
        "penalty_threshold_range": list(implied) if implied is not None else None,
        "at_report_threshold": at(points["report"]),
        "at_penalty_threshold": at(points["penalty"]) if "penalty" in points else None,
        "curve": curve.to_dict("list"),
    })
