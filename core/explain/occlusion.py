"""Occlusion maps (Captum `Occlusion`): how much the target probability drops when a window of the image is hidden."""

from __future__ import annotations

import math
import threading
import time
import weakref

import numpy as np
import torch
import torchvision.transforms.functional as TF
from captum.attr import Occlusion
from torch import nn

from core.errors import InputError
from core.explain.model_state import ClassProbabilities
from core.explain.windows import (BASELINES, DEFAULT_REFINE_REGIONS, DEFAULT_WINDOW, default_stride,
                                  occlusion_plan)
from core.models.precision import FrozenForward, frozen_forward, requested_engine

CPU_PERTURBATIONS_PER_EVAL = 32  # CPU throughput is flat beyond a few dozen images per batch
MAX_PERTURBATIONS_PER_EVAL = 1024

# ONNX sessions per shared model (the dashboard keeps models across sessions): opened once, not per map. Only ONNX
# engines are kept: their closures hold the head, never the model, so the weak key can go.
_ENGINES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def occlusion_forward(model: nn.Module, batch: torch.Tensor, fp32: bool = False,
                      framing: str | None = None) -> FrozenForward:
    """The measured engine for hundreds of forward passes of `model` on batches shaped like `batch`: ONNX Runtime
    (the backbone exported once into the workspace's cache/onnx) or torch autocast, as predict uses."""
    from core.store import Workspace

    amp_mode = "off" if fp32 else "auto"
    key = (tuple(batch.shape[1:]), str(batch.device), amp_mode, requested_engine(), framing)
    with _ENGINES_LOCK:
        known = _ENGINES.get(model, {}).get(key)
        if known is not None:
            return known
        forward = frozen_forward(model, batch.shape[1:], batch.device, amp_mode=amp_mode,
                                 cache_dir=Workspace.locate() / "cache" / "onnx", framing=framing)
        if forward.engine == "onnx":
            _ENGINES.setdefault(model, {})[key] = forward
        return forward


def occlusion_baseline(batch: torch.Tensor, kind: str, *, window: int, blur_sigma: float | None,
                       preprocess: dict | None) -> torch.Tensor:
    """What replaces the hidden window: black pixels, the image's own mean colour, or a blurred copy of it."""
    if kind == "black":
        # Black in pixel space is (0 - mean) / std after normalisation; without the config, 0 in tensor space.
        if preprocess and preprocess.get("mean") is not None and preprocess.get("std") is not None:
            mean = torch.as_tensor(preprocess["mean"], dtype=batch.dtype, device=batch.device)
            std = torch.as_tensor(preprocess["std"], dtype=batch.dtype, device=batch.device)
            if mean.numel() != batch.shape[1] or std.numel() != batch.shape[1]:
                raise InputError(f"preprocess mean/std have {mean.numel()} values for a {batch.shape[1]}-channel image")
            value = (-mean / std).reshape(1, -1, 1, 1)
        else:
            value = torch.zeros(1, batch.shape[1], 1, 1, dtype=batch.dtype, device=batch.device)
        return value.expand_as(batch).contiguous()
    if kind == "mean":
        return batch.mean(dim=(2, 3), keepdim=True).expand_as(batch).contiguous()
    if kind == "blur":
        sigma = float(blur_sigma if blur_sigma is not None else window / 4.0)
        if sigma <= 0:
            raise InputError(f"blur_sigma must be positive, got {sigma}")
        # kernel of about +-2 sigma, odd, and small enough for the reflect padding on tiny images
        kernel = min(2 * math.ceil(2 * sigma) + 1, 2 * ((min(batch.shape[2:]) - 1) // 2) + 1)
        return TF.gaussian_blur(batch, [kernel, kernel], [sigma, sigma])
    raise InputError(f"occlusion baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def auto_perturbations_per_eval(model: nn.Module, batch: torch.Tensor, n_windows: int) -> int:
    """Occluded copies per forward pass: a fixed moderate batch on CPU; on CUDA as many as half the free memory
    holds, from the activation memory of a measured probe batch."""
    if batch.device.type != "cuda":
        return max(1, min(CPU_PERTURBATIONS_PER_EVAL, n_windows))
    device = batch.device
    torch.cuda.synchronize(device)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    probe = 8
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        model(batch.expand(probe, *batch.shape[1:]).contiguous())
    torch.cuda.synchronize(device)
    # Captum also holds the expanded input, its mask and the ablated copy: ~4 input-sized tensors per copy.
    per_copy = (torch.cuda.max_memory_allocated(device) - before) / probe + 4 * batch[0].numel() * batch.element_size()
    fit = int(0.5 * free / max(per_copy, 1.0))
    return max(1, min(fit, n_windows, MAX_PERTURBATIONS_PER_EVAL))


def occlusion_attribution(model: nn.Module, batch: torch.Tensor, target: int, *, preprocess: dict | None = None,
                          window: int = DEFAULT_WINDOW, stride: int | None = None, baseline: str = "black",
                          blur_sigma: float | None = None, perturbations_per_eval: int | None = None,
                          multilabel: bool = False, fp32: bool = False,
                          refine_regions: int = DEFAULT_REFINE_REGIONS) -> dict:
    """Captum Occlusion on the probability of `target`; the model must already be borrowed (eval, frozen).
    `fp32=True` turns the fast (bf16) path off. `refine_regions` > 0: coarse-to-fine where that is cheaper
    (core.explain.windows.occlusion_plan; see coarse_to_fine), 0: every window position at the fine stride.

    Returns {'raw': (C, H, W), 'map': (H, W) (channel mean; all channels are hidden together, so they agree),
    'params': resolved parameters, 'info': runtime facts}."""
    in_h, in_w = (int(v) for v in batch.shape[2:])
    window = int(window)
    stride = int(stride) if stride is not None else default_stride(window)
    if not 1 <= window <= min(in_h, in_w):
        raise InputError(f"occlusion window must be between 1 and the image size {min(in_h, in_w)} px, got {window}")
    if not 1 <= stride <= window:
        raise InputError(f"occlusion stride must be between 1 and the window ({window} px), got {stride}")
    if baseline not in BASELINES:
        raise InputError(f"occlusion baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    refine_regions = int(refine_regions)
    if refine_regions < 0:
        raise InputError(f"refine_regions must be 0 (a full pass) or more, got {refine_regions}")
    plan = occlusion_plan((in_h, in_w), window, stride, refine_regions)
    n_windows = plan["most_windows"]
    if perturbations_per_eval is None:
        perturbations_per_eval = auto_perturbations_per_eval(model, batch, n_windows)
    elif int(perturbations_per_eval) < 1:
        raise InputError(f"perturbations_per_eval must be at least 1, got {perturbations_per_eval}")
    base = occlusion_baseline(batch, baseline, window=window, blur_sigma=blur_sigma, preprocess=preprocess)

    started = time.perf_counter()
    channels = batch.shape[1]
    # Occlusion is hundreds of forward passes of a frozen model: the device's measured fast path (ONNX Runtime, or
    # torch with bf16 autocast where the CPU or GPU has it), as predict uses. Probabilities in float32 either way.
    forward = occlusion_forward(model, batch, fp32, (preprocess or {}).get("framing"))
    scorer = ClassProbabilities(forward, multilabel)
    if plan["coarse_window"] is None:
        attribution = Occlusion(scorer).attribute(
            batch,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=base,
            target=int(target),
            perturbations_per_eval=int(perturbations_per_eval),
        )
        raw = attribution[0].detach().float().cpu().numpy()
        evaluated = plan["full_windows"]
    else:
        values, evaluated = coarse_to_fine(scorer, batch, base, int(target), window=window, stride=stride,
                                           coarse=plan["coarse_window"], regions=refine_regions,
                                           per_eval=int(perturbations_per_eval))
        raw = np.broadcast_to(values, (channels, in_h, in_w)).astype(np.float32)
    params = {"window": window, "stride": stride, "baseline": baseline, "multilabel": bool(multilabel),
              "refine_regions": refine_regions}
    if baseline == "blur":
        params["blur_sigma"] = float(blur_sigma if blur_sigma is not None else window / 4.0)
    info = {"seconds": round(time.perf_counter() - started, 4), "windows": int(evaluated),
            "full_windows": plan["full_windows"], "coarse_window": plan["coarse_window"],
            "precision": forward.precision, "engine": forward.engine,
            "perturbations_per_eval": int(perturbations_per_eval), "device": str(batch.device)}
    return {"raw": raw, "map": raw.mean(axis=0).astype(np.float32), "params": params, "info": info}


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one side, as Captum places them (the last window clipped at the edge)."""
    return [i * stride for i in range(math.ceil(max(size - window, 0) / stride) + 1)]


def window_drops(scorer: nn.Module, batch: torch.Tensor, base: torch.Tensor, target: int,
                 corners: list[tuple[int, int]], window: int, per_eval: int) -> np.ndarray:
    """The drop in the target's probability when each window (top-left corner (y, x), side `window`, all channels)
    is replaced by the baseline; `per_eval` occluded copies per forward pass."""
    drops = []
    with torch.no_grad():
        reference = scorer(batch)[0, target].float()
        for first in range(0, len(corners), per_eval):
            chunk = corners[first:first + per_eval]
            copies = batch.expand(len(chunk), *batch.shape[1:]).clone()
            for i, (y, x) in enumerate(chunk):
                copies[i, :, y:y + window, x:x + window] = base[0, :, y:y + window, x:x + window]
            drops.append((reference - scorer(copies)[:, target].float()).cpu())
    return torch.cat(drops).numpy().astype(np.float64) if drops else np.zeros(0)


def _spread(shape: tuple[int, int], corners, window: int, drops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the sum of the drops of the windows covering it, and how many cover it (Captum's averaging)."""
    total, weights = np.zeros(shape), np.zeros(shape)
    for (y, x), drop in zip(corners, drops):
        total[y:y + window, x:x + window] += drop
        weights[y:y + window, x:x + window] += 1
    return total, weights


def coarse_to_fine(scorer: nn.Module, batch: torch.Tensor, base: torch.Tensor, target: int, *, window: int,
                   stride: int, coarse: int, regions: int, per_eval: int) -> tuple[np.ndarray, int]:
    """(map (H, W), windows evaluated): a coarse pass (side `coarse`, non-overlapping), then every fine window
    (`window`, `stride`, Captum's grid) touching the `regions` coarse windows with the largest drops. Inside those
    regions the map equals the full fine map (each of their pixels has all its covering windows); outside it is the
    coarse map scaled down to the fine map's level in the refined regions (never up), so the refined regions hold
    the peak and the colour scale."""
    height, width = (int(v) for v in batch.shape[2:])
    coarse_corners = [(y, x) for y in _starts(height, coarse, coarse) for x in _starts(width, coarse, coarse)]
    coarse_drops = window_drops(scorer, batch, base, target, coarse_corners, coarse, per_eval)
    total, weights = _spread((height, width), coarse_corners, coarse, coarse_drops)
    coarse_map = total / np.maximum(weights, 1)
    refined = np.zeros((height, width), dtype=bool)
    for index in np.argsort(-coarse_drops, kind="stable")[:regions]:
        y, x = coarse_corners[index]
        refined[y:y + coarse, x:x + coarse] = True
    fine_corners = [(y, x) for y in _starts(height, window, stride) for x in _starts(width, window, stride)
                    if refined[y:y + window, x:x + window].any()]
    fine_drops = window_drops(scorer, batch, base, target, fine_corners, window, per_eval)
    total, weights = _spread((height, width), fine_corners, window, fine_drops)
    fine_map = total / np.maximum(weights, 1)
    fine_level, coarse_level = np.abs(fine_map[refined]).mean(), np.abs(coarse_map[refined]).mean()
    scale = min(1.0, fine_level / coarse_level) if coarse_level > 0 else 1.0
    values = np.where(refined, fine_map, coarse_map * scale).astype(np.float32)
    return values, len(coarse_corners) + len(fine_corners)
