"""Borrowing a shared model for one explanation and giving it back exactly as it was (hooks, flags, mode)."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from core.errors import InputError

# Every per-module hook table torch keeps; anything added to these during an explanation is removed afterwards.
_HOOK_TABLES = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)

# One lock per model object: the gallery (a worker thread) and a page may explain the same cached model at once,
# and the save/restore of flags below must not interleave.
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_ABSENT = object()


def _lock_for(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def hook_counts(model: nn.Module) -> dict[str, int]:
    """How many hooks of each kind are registered anywhere in `model` (tests and sanity checks)."""
    counts = dict.fromkeys(_HOOK_TABLES, 0)
    for module in model.modules():
        for table in _HOOK_TABLES:
            counts[table] += len(getattr(module, table, {}) or {})
    return counts


@contextmanager
def borrowed_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with frozen parameters for the duration of the block, then restore every module's
    training flag, every parameter's requires_grad, the hook tables and backward-hook kind, even when the block
    raises. Parameters are frozen because attributions need gradients only with respect to the input/activations."""
    if not isinstance(model, nn.Module):
        raise InputError(f"explain needs a torch.nn.Module, got {type(model).__name__}")
    with _lock_for(model):
        modules = list(model.modules())
        training = [module.training for module in modules]
        full_backward = [module.__dict__.get("_is_full_backward_hook", _ABSENT) for module in modules]
        hook_keys = [{table: set(getattr(module, table, {}) or {}) for table in _HOOK_TABLES} for module in modules]
        parameters = list(model.parameters())
        requires_grad = [p.requires_grad for p in parameters]
        try:
            model.eval()
            for p in parameters:
                p.requires_grad_(False)
            yield model
        finally:
            for p, flag in zip(parameters, requires_grad):
                p.requires_grad_(flag)
            for module, flag, kind, keys in zip(modules, training, full_backward, hook_keys):
                module.training = flag  # set per module: model.train(flag) would overwrite mixed states
                if kind is _ABSENT:
                    module.__dict__.pop("_is_full_backward_hook", None)
                else:
                    module.__dict__["_is_full_backward_hook"] = kind
                for table in _HOOK_TABLES:
                    hooks = getattr(module, table, None)
                    if hooks:
                        for key in [k for k in hooks if k not in keys[table]]:
                            del hooks[key]


def model_device(model: nn.Module) -> torch.device:
    """The device the model's weights live on (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def as_batch(image: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A (1, C, H, W) float tensor on the model's device, detached from any graph the caller holds."""
    if not isinstance(image, torch.Tensor):
        raise InputError(f"explain needs a preprocessed image tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise InputError(f"explain needs one image shaped (1, C, H, W) or (C, H, W), got {tuple(image.shape)}")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return image.detach().to(device=model_device(model), dtype=dtype)


class ClassProbabilities(nn.Module):
    """The model with softmax (or sigmoid for multilabel tasks) on top, so attributions speak in probabilities."""

    def __init__(self, model: nn.Module, multilabel: bool = False):
        super().__init__()
        self.model = model
        self.multilabel = multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x).float()  # probabilities in float32, also under bf16 autocast
        if logits.dim() != 2:
            raise InputError(f"the model must return (batch, classes) scores, got shape {tuple(logits.shape)}")
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def target_probability(model: nn.Module, batch: torch.Tensor, target: int, multilabel: bool) -> float:
    """The model's probability for `target` on the unperturbed image (stored with every map)."""
    with torch.no_grad():
        probs = ClassProbabilities(model, multilabel)(batch)
    check_target(target, probs.shape[1])
    return float(probs[0, target])


def check_target(target: int, n_classes: int) -> None:
    if not 0 <= int(target) < n_classes:
        raise InputError(f"target class index {target} is outside the model's {n_classes} classes")
