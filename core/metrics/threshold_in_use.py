"""The threshold in use and where it comes from: the one rule every page, the report and the presentation follow.

Until the user picks a threshold, the model's own operating point (core.metrics.model_operating_point, stored in
its model card and used for its `predicted` column) is the threshold, so every number at the threshold agrees with
the model's calls; a model without one falls back to DEFAULT_THRESHOLD. Each number says where its threshold
came from: "model's point 0.544", "your threshold 0.500", "default threshold 0.500". Scores imported from a
file (core.infer.imported) have no operating point: the default, and the label says none came with them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.metrics.model_operating_point import ModelOperatingPoint

DEFAULT_THRESHOLD = 0.5
SOURCES = {"model": "model's point", "user": "your threshold", "default": "default threshold",
           "imported": "default threshold"}
NO_IMPORTED_POINT = "no operating point came with these scores"


@dataclass(frozen=True)
class ThresholdInUse:
    value: float
    source: str  # a key of SOURCES

    @property
    def label(self) -> str:
        """'model's point 0.544' / 'your threshold 0.500' / 'default threshold 0.500'."""
        note = f" ({NO_IMPORTED_POINT})" if self.source == "imported" else ""  # scores imported from a file
        return f"{SOURCES[self.source]} {self.value:.3f}{note}"


def _point(model_point) -> ModelOperatingPoint | None:
    if model_point is None or isinstance(model_point, ModelOperatingPoint):
        return model_point
    return ModelOperatingPoint.from_dict(model_point if isinstance(model_point, dict) else None)


def threshold_in_use(model_point=None, chosen: float | None = None, view_name: str | None = None, *,
                     imported: bool = False) -> ThresholdInUse:
    """The threshold in use: `chosen` (the user's, None when not chosen) else the model's operating point (a
    ModelOperatingPoint or its card dict; only when it is set on `view_name`, when one is given) else the default.
    A chosen value equal to the model's point is labelled as the model's point. `imported`: the scores came from a
    file (core.infer.imported), so the default's source is "imported"."""
    point = _point(model_point)
    if point is not None and view_name is not None and point.view != view_name:
        point = None
    value = None
    if chosen is not None:
        try:
            value = float(chosen)
        except (TypeError, ValueError):
            value = None
        if value is not None and not math.isfinite(value):
            value = None
    if value is None:
        if point is not None:
            return ThresholdInUse(float(point.threshold), "model")
        return ThresholdInUse(DEFAULT_THRESHOLD, "imported" if imported else "default")
    value = min(max(value, 0.0), 1.0)
    if point is not None and math.isclose(value, float(point.threshold), abs_tol=1e-9):
        return ThresholdInUse(value, "model")
    return ThresholdInUse(value, "user")
