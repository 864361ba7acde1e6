"""Occlusion maps (Captum `Occlusion`): how much the target probability drops when a window of the image is hidden."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torchvision.transforms.functional as TF
from captum.attr import Occlusion
from torch import nn

from core.errors import InputError
from core.explain.model_state import ClassProbabilities
from core.explain.windows import BASELINES, DEFAULT_WINDOW, default_stride, window_count
from core.models.precision import inference_precision

CPU_PERTURBATIONS_PER_EVAL = 32  # CPU throughput is flat beyond a few dozen images per batch
MAX_PERTURBATIONS_PER_EVAL = 1024


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
                          multilabel: bool = False, fp32: bool = False) -> dict:
    """Captum Occlusion on the probability of `target`; the model must already be borrowed (eval, frozen).
    `fp32=True` turns the fast (bf16) path off.

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
    n_windows = window_count((in_h, in_w), window, stride)
    if perturbations_per_eval is None:
        perturbations_per_eval = auto_perturbations_per_eval(model, batch, n_windows)
    elif int(perturbations_per_eval) < 1:
        raise InputError(f"perturbations_per_eval must be at least 1, got {perturbations_per_eval}")
    base = occlusion_baseline(batch, baseline, window=window, blur_sigma=blur_sigma, preprocess=preprocess)

    started = time.perf_counter()
    channels = batch.shape[1]
    # Occlusion is hundreds of forward passes of a frozen model: the device's fast inference path (bf16 autocast
    # where the CPU or GPU has it), as predict uses. Probabilities are computed in float32 either way.
    dtype, _ = inference_precision(batch.device, "off" if fp32 else "auto")
    with torch.autocast(batch.device.type, dtype=dtype, enabled=dtype is not None):
        attribution = Occlusion(ClassProbabilities(model, multilabel)).attribute(
            batch,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=base,
            target=int(target),
            perturbations_per_eval=int(perturbations_per_eval),
        )
    raw = attribution[0].detach().float().cpu().numpy()
    params = {"window": window, "stride": stride, "baseline": baseline, "multilabel": bool(multilabel)}
    if baseline == "blur":
        params["blur_sigma"] = float(blur_sigma if blur_sigma is not None else window / 4.0)
    info = {"seconds": round(time.perf_counter() - started, 4), "windows": n_windows,
            "precision": str(dtype or torch.float32).replace("torch.", ""),
            "perturbations_per_eval": int(perturbations_per_eval), "device": str(batch.device)}
    return {"raw": raw, "map": raw.mean(axis=0).astype(np.float32), "params": params, "info": info}
