"""The explainers the product offers: the one source of their names, titles, parameters (with widget hints), cost
model and compute function, for the UI, the CLI and the tests. Importing it loads no torch or Captum: each
method's module is imported when a map is first computed.

Adding an attribution method: write its module (a function `compute(model, batch, target, preprocess=...,
**params) -> dict`, see occlusion_attribution) and add one Explainer entry below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from core.errors import InputError
from core.explain.windows import BASELINES, DEFAULT_REFINE_REGIONS, DEFAULT_WINDOW, default_stride, occlusion_plan


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an explainer: enough for a widget (kind, default, bounds, choices) and for validation."""

    name: str
    kind: str  # "int" | "float" | "bool" | "choice" | "str"
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    affects_result: bool = True  # False: a speed knob, left out of the cache key
    # Widget hints: `hidden` parameters are set by the model or are speed knobs (no widget); `unit` follows the
    # label; `within_input` parameters cannot exceed the model's input side (the widget's maximum).
    hidden: bool = False
    unit: str = ""
    within_input: bool = False

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize() + (f" ({self.unit})" if self.unit else "")

    def coerce(self, value: Any) -> Any:
        """`value` converted to this parameter's type; InputError naming the parameter when it does not fit."""
        if value is None:
            return None
        try:
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "yes")
                value = bool(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise InputError(f"parameter {self.name!r} must be {self.kind}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise InputError(f"parameter {self.name!r} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"parameter {self.name!r} must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"parameter {self.name!r} must be at most {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class Explainer:
    """A named attribution method: `compute(model, batch, target, preprocess=..., **params) -> dict` (see
    occlusion_attribution, named here as "module:function" and imported on first use), its parameter specs, its
    cost model and whether the UI computes it at once."""

    name: str
    title: str
    description: str
    params: tuple[ParamSpec, ...]
    compute_path: str
    # Cost of one map in forward passes of the model, from its input size (h, w) and parameters.
    forward_passes: Callable[[tuple[int, int], Mapping], float]
    # What a map's values measure, for the colour scale's legend.
    map_unit: str = "attribution"
    # True: cheap enough (a few passes) to compute whenever a case is shown; False: on request or in a batch job.
    at_once: bool = False
    # True: reads a layer's activations and gradients, so it is offered only for models whose layers Python can
    # reach (not an imported ONNX model or a TorchScript function; ExplainModel.unavailable says why).
    needs_layers: bool = False

    @property
    def compute(self) -> Callable[..., dict]:
        module, function = self.compute_path.split(":")
        return getattr(importlib.import_module(module), function)

    def resolve_params(self, given: dict) -> dict:
        """The given parameters validated and typed, unknown names refused (defaults left to the method)."""
        specs = {spec.name: spec for spec in self.params}
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise InputError(f"{self.name} has no parameter {', '.join(map(repr, unknown))}; "
                             f"it takes {', '.join(specs)}")
        return {name: specs[name].coerce(value) for name, value in given.items()}

    def speed_only_params(self) -> set[str]:
        return {spec.name for spec in self.params if not spec.affects_result}


_MULTILABEL = ParamSpec("multilabel", "bool", False,
                        "Sigmoid per class (multi-label tasks) instead of softmax over classes.", hidden=True)


def _occlusion_passes(input_hw: tuple[int, int], params: Mapping) -> float:
    """One forward pass per occluded copy: the full grid's windows, or coarse-to-fine's most (its coarse windows
    plus every refined region's fine windows, counted as if no two regions overlapped: an upper bound)."""
    window = min(int(params.get("window") or DEFAULT_WINDOW), *input_hw)
    stride = int(params.get("stride") or default_stride(window))
    regions = params.get("refine_regions")
    regions = DEFAULT_REFINE_REGIONS if regions is None else int(regions)
    return float(occlusion_plan(input_hw, window, min(stride, window), regions)["most_windows"])


def _gradcam_passes(input_hw: tuple[int, int], params: Mapping) -> float:
    """About one forward and one backward (x2 when guided backpropagation is multiplied in)."""
    return 3.0 if not params.get("guided") else 6.0

_EXPLAINERS: dict[str, Explainer] = {
    "occlusion": Explainer(
        name="occlusion",
        title="Occlusion",
        description=("Hides one square window of the image at a time and records how much the probability of the "
                     "class drops: the bright regions are those the model needs (Kermany et al. 2018)."),
        params=(
            ParamSpec("window", "int", DEFAULT_WINDOW, "Side of the hidden square, in input pixels.", minimum=1,
                      unit="px", within_input=True),
            ParamSpec("stride", "int", None, "Step between windows in pixels (default: half the window); "
                      "smaller is finer and slower.", minimum=1, unit="px", within_input=True),
            ParamSpec("baseline", "choice", "black", "What fills the hidden window: black, the image's mean "
                      "colour, or a blurred copy.", choices=BASELINES),
            ParamSpec("refine_regions", "int", DEFAULT_REFINE_REGIONS, "Coarse-to-fine: a coarse pass (windows "
                      "twice as wide, side by side), then the window and stride above only in this many of its "
                      "strongest regions, where the map is exact; 0 = every position at the fine stride (slowest).",
                      minimum=0, maximum=64),
            ParamSpec("blur_sigma", "float", None, "Blur strength for the blur baseline (default: window / 4).",
                      minimum=0.0, hidden=True),
            ParamSpec("perturbations_per_eval", "int", None, "Occluded copies per forward pass (default: sized "
                      "to the device).", minimum=1, affects_result=False, hidden=True),
            _MULTILABEL,
        ),
        compute_path="core.explain.occlusion:occlusion_attribution",
        forward_passes=_occlusion_passes,
        map_unit="drop in probability",
    ),
    "gradcam": Explainer(
        name="gradcam",
        title="Grad-CAM",
        description=("Weights the feature maps of a late layer by the gradient of the class score and upsamples "
                     "the result to the image: fast, coarse."),
        params=(
            ParamSpec("layer", "str", None, "Layer name (default: the last convolutional stage, or the last "
                      "transformer block's tokens)."),
            ParamSpec("guided", "bool", False, "Multiply with guided backpropagation for finer detail "
                      "(ReLU networks)."),
            ParamSpec("relu", "bool", True, "Keep only evidence for the class, as in the original Grad-CAM."),
            _MULTILABEL,
        ),
        compute_path="core.explain.gradcam:gradcam_attribution",
        forward_passes=_gradcam_passes,
        map_unit="relative activation",
        at_once=True,
        needs_layers=True,
    ),
}


def explainer_names() -> list[str]:
    return list(_EXPLAINERS)


def list_explainers() -> list[Explainer]:
    """Every explainer, in the order the UI shows them."""
    return list(_EXPLAINERS.values())


def get_explainer(name: str) -> Explainer:
    try:
        return _EXPLAINERS[name]
    except KeyError:
        raise InputError(f"unknown explanation method {name!r}; choose one of {', '.join(_EXPLAINERS)}") from None
