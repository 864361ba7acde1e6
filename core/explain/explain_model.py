"""A trained run's model ready to explain: loaded once, its preprocessing, classes, cache id and measured speed."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from PIL import Image

from core.errors import InputError
from core.explain.model_state import borrowed_model, model_device
from core.explain.registry import get_explainer


def unavailable_reason(model: torch.nn.Module, method: str) -> str | None:
    """Why `method` is not offered for `model` (None when it is): a method that reads a layer's activations and
    gradients (the registry's `needs_layers`) needs a model whose layers are reachable; an imported ONNX model or a
    TorchScript function states why it has none (core.models.external)."""
    if not get_explainer(method).needs_layers:
        return None
    return getattr(model, "layers_unreachable", None)


def not_offered(model: torch.nn.Module, method: str) -> str | None:
    """The one sentence the Explain page and `python -m core explain` give when `method` is not offered for `model`
    (None when it is)."""
    reason = unavailable_reason(model, method)
    return None if reason is None else f"{get_explainer(method).title} is not offered for this model: {reason}."


@dataclass(eq=False)
class ExplainModel:
    """A trained run's model ready to explain: its preprocessing, classes, and a `model_id` that changes with the
    weights (the map cache key). Share one across sessions: explain() borrows it and leaves it as it was."""

    model: torch.nn.Module
    card: dict
    classes: list[str]
    preprocess: dict
    model_id: str
    multilabel: bool = False
    _transform: Callable | None = field(default=None, repr=False)
    _seconds_per_image: float | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, run_id: str | None = None, device: str = "cpu") -> "ExplainModel":
        """The checkpoint of a run folder (or checkpoint folder / .safetensors), on `device` ("auto": CUDA if any).
        An imported ONNX or TorchScript run loads through the same call (core.models.external wraps it)."""
        from core.models import load_checkpoint

        model, card = load_checkpoint(run_dir)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        classes = [str(c) for c in card.get("classes") or []]
        if not classes:
            raise InputError(f"{run_dir}: the model card names no classes")
        preprocess = dict(card.get("preprocessing") or {})
        model_id = f"{run_id or Path(run_dir).name}|{getattr(model, 'weights_source', '')}"
        return cls(model, card, classes, preprocess, model_id, multilabel=card.get("kind") == "multilabel")

    @property
    def transform(self) -> Callable:
        if self._transform is None:
            from core.models import build_transform

            self._transform = build_transform(self.preprocess)
        return self._transform

    @property
    def input_hw(self) -> tuple[int, int]:
        size = self.preprocess.get("input_size") or (3, 224, 224)
        return int(size[-2]), int(size[-1])

    def tensor(self, image: Image.Image) -> torch.Tensor:
        """The image preprocessed as at evaluation, (1, C, H, W)."""
        return self.transform(image).unsqueeze(0)

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise InputError(f"class {name!r} is not one of the model's classes ({', '.join(self.classes)})")
        return self.classes.index(name)

    def clone(self) -> "ExplainModel":
        """An independent copy of the weights (same model_id): a worker thread explains with it, so pages using the
        shared model never wait for the worker's lock."""
        return ExplainModel(copy.deepcopy(self.model), self.card, self.classes, self.preprocess, self.model_id,
                            self.multilabel, self._transform, self._seconds_per_image)

    def seconds_per_image(self) -> float:
        """Measured forward time per image (batch of 8, best of two after a warm-up, since the first passes pay
        for allocation), cached: the basis of time estimates."""
        if self._seconds_per_image is None:
            device = model_device(self.model)  # an imported ONNX model has no parameters
            batch = torch.zeros(8, 3, *self.input_hw, device=device)
            timings = []
            with borrowed_model(self.model), torch.no_grad():
                for _ in range(3):
                    started = time.perf_counter()
                    self.model(batch)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    timings.append(time.perf_counter() - started)
            self._seconds_per_image = min(timings[1:]) / len(batch)
        return self._seconds_per_image

    def unavailable(self, method: str) -> str | None:
        """Why `method` is not offered for this model (None when it is): `unavailable_reason`."""
        return unavailable_reason(self.model, method)

    def not_offered(self, method: str) -> str | None:
        """The sentence the page shows when `method` is not offered for this model (None when it is)."""
        return not_offered(self.model, method)

    def expected_seconds(self, method: str, params: Mapping | None = None) -> float:
        """About how long one map takes here: the method's cost in forward passes (its registry entry's cost
        model) times the measured forward time."""
        return get_explainer(method).forward_passes(self.input_hw, dict(params or {})) * self.seconds_per_image()
