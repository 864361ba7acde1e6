"""The model's own operating point: a threshold on its headline binary view, chosen without test data.

A threshold learnt implicitly by "most probable class" on the training distribution does not transfer (a model's
own calls can miss a third of the children with pneumonia). The operating point is instead chosen by a stated rule
on out-of-fold predictions of the training images, stored with the model, and applied by `predict` to the
`predicted` column: a case whose score on the view reaches the threshold gets its most probable positive class,
otherwise its most probable negative class (core.metrics.dashboard.calls_at_threshold).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.data.tasks import BinaryView, Task
from core.errors import InputError
from core.metrics.operating import BinaryScores
from core.metrics.referral import binary_view_data

# rule name -> what it means, for the UI and the model card
OPERATING_RULES = {
    "youden": "Youden's J (sensitivity + specificity - 1) maximised",
    "sensitivity": "the highest threshold whose sensitivity reaches the target (screening)",
    "argmax": "the most probable class (no threshold)",
}
DEFAULT_RULE = "youden"
DEFAULT_TARGET_SENSITIVITY = 0.95


@dataclass(frozen=True)
class ModelOperatingPoint:
    """A threshold on `view`'s score and how it was chosen; sensitivity/specificity are where it was chosen."""

    view: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    threshold: float
    rule: str
    target: float | None
    sensitivity: float
    specificity: float
    n_positive: int
    n_negative: int
    source: str = "out-of-fold predictions on the training images"

    @property
    def binary_view(self) -> BinaryView:
        return BinaryView(self.view, self.positive, self.negative)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["positive"], out["negative"] = list(self.positive), list(self.negative)
        return out

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "model card") -> "ModelOperatingPoint | None":
        if not data:
            return None
        try:
            return cls(view=str(data["view"]), positive=tuple(data["positive"]), negative=tuple(data["negative"]),
                       threshold=float(data["threshold"]), rule=str(data["rule"]),
                       target=None if data.get("target") is None else float(data["target"]),
                       sensitivity=float(data["sensitivity"]), specificity=float(data["specificity"]),
                       n_positive=int(data["n_positive"]), n_negative=int(data["n_negative"]),
                       source=str(data.get("source") or cls.source))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: operating point is incomplete or malformed ({exc})") from None

    def describe(self) -> str:
        return (f"{self.view}: score >= {self.threshold:.3f} ({OPERATING_RULES.get(self.rule, self.rule)}"
                f"{f', target {self.target:g}' if self.target is not None else ''}); sensitivity "
                f"{self.sensitivity:.3f}, specificity {self.specificity:.3f} on {self.source}")


def operating_view(task: Task) -> BinaryView | None:
    """The view an operating point is set on: the task's headline view when it decides every case."""
    if task.kind == "multilabel":
        return None
    for view in task.binary_views:
        if set(view.positive) | set(view.negative) == set(task.classes):
            return view
    return None


def choose_operating_point(task: Task, truth, probabilities, rule: str = DEFAULT_RULE, target: float | None = None,
                           source: str = ModelOperatingPoint.source) -> ModelOperatingPoint | None:
    """The operating point by `rule` on (truth class indices, probabilities); None for 'argmax', for tasks with
    no deciding view, or when the data hold one side of the view only."""
    if rule not in OPERATING_RULES:
        raise InputError(f"operating-point rule must be one of {', '.join(OPERATING_RULES)}, got {rule!r}")
    view = operating_view(task)
    if rule == "argmax" or view is None:
        return None
    probabilities = np.asarray(probabilities, dtype=float)
    truth = np.asarray(truth, dtype=np.int64)
    keep = ~np.isnan(probabilities).any(axis=1)
    data = binary_view_data(truth[keep], probabilities[keep], task.classes, view)
    scores = BinaryScores(data.truth, data.scores)
    if scores.n_positive == 0 or scores.n_negative == 0:
        return None
    if rule == "youden":
        point = scores.youden()
    else:
        target = DEFAULT_TARGET_SENSITIVITY if target is None else float(target)
        point = scores.threshold_for_sensitivity(target)
    threshold = _between(point.threshold, data.scores)
    at = scores.at_threshold(threshold)
    return ModelOperatingPoint(view.name, tuple(view.positive), tuple(view.negative), threshold, rule,
                               target if rule == "sensitivity" else None, at.sensitivity, at.specificity,
                               scores.n_positive, scores.n_negative, source)


def _between(threshold: float, scores: np.ndarray) -> float:
    """Midway between the chosen score and the next lower one: the same calls on these data, less tied to them."""
    if not math.isfinite(threshold):
        return 1.0
    below = scores[scores < threshold]
    return float((threshold + below.max()) / 2) if below.size else float(threshold)
