"""Where the preprocessed input's pixels came from in the original image, to bring maps back to it.

Maps are computed in input-tensor coordinates. Boxes and overlays live on the original image, so a map is mapped
back by inverting the evaluation preprocessing, which follows timm's eval transform (the one carried with the model's
preprocess config): resize by `1/crop_pct` then
- crop_mode "center" (timm's default): shortest edge fitted, centre crop (the image edges beyond the crop are lost),
- "squash": each edge resized on its own (aspect ratio not kept), centre crop,
- "border": longest edge fitted, padded to the input size.
Original-image pixels the model never saw (cut by a centre crop) get NaN: there is no attribution for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import InputError
from core.models.preprocess import CROP_MODES


@dataclass(frozen=True)
class InputGeometry:
    """The original image resized to `resized` (width, height), then cut/padded to the input at `offset`
    (x, y of the input's top-left corner inside the resized image; negative = padding)."""

    original_size: tuple[int, int]  # (width, height), as PIL's Image.size
    input_size: tuple[int, int]  # (height, width) of the model input tensor
    resized: tuple[int, int]
    offset: tuple[int, int]


def input_geometry(original_size: tuple[int, int], preprocess: dict | None, input_hw: tuple[int, int]) -> InputGeometry:
    """The geometry of the eval preprocessing for an image of `original_size` = (width, height).

    `preprocess` is the model's preprocess config (keys `crop_pct`, optional `crop_mode`); None or crop_pct 1 with
    crop_mode "squash" means the image was resized straight to the input size."""
    width, height = (int(v) for v in original_size)
    if width <= 0 or height <= 0:
        raise InputError(f"output_size must be a positive (width, height), got {original_size}")
    in_h, in_w = (int(v) for v in input_hw)
    preprocess = preprocess or {"crop_pct": 1.0, "crop_mode": "squash"}
    crop_pct = float(preprocess.get("crop_pct") or 1.0)
    mode = preprocess.get("crop_mode") or "center"
    if mode not in CROP_MODES:
        raise InputError(f"preprocess crop_mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    # timm: scale_size = floor(size / crop_pct) per edge; sizes and offsets rounded as torchvision/timm round them
    scale_h, scale_w = math.floor(in_h / crop_pct), math.floor(in_w / crop_pct)
    if mode == "squash":  # Resize((scale_h, scale_w))
        resized = (scale_w, scale_h)
    elif mode == "center" and scale_h == scale_w:  # Resize(int): shortest edge to scale, the other truncated
        short, long = min(width, height), max(width, height)
        long_new = int(scale_h * long / short)
        resized = (scale_h, long_new) if width <= height else (long_new, scale_h)
    else:  # timm ResizeKeepRatio: shortest edge fitted (center) or longest edge fitted (border)
        ratios = (height / scale_h, width / scale_w)
        ratio = min(ratios) if mode == "center" else max(ratios)
        resized = (round(width / ratio), round(height / ratio))
    offset = (_crop_offset(resized[0], in_w), _crop_offset(resized[1], in_h))
    return InputGeometry((width, height), (in_h, in_w), resized, offset)


def _crop_offset(resized: int, size: int) -> int:
    """Where a centre crop (or the centre padding, negative) puts the input's first pixel in the resized image."""
    if resized >= size:
        return int(round((resized - size) / 2.0))
    return -((size - resized) // 2)


def map_to_image(attribution: np.ndarray, original_size: tuple[int, int], preprocess: dict | None) -> np.ndarray:
    """An input-resolution map (H, W) resampled onto the original image (height, width) with bilinear sampling;
    NaN where the original image was cropped away."""
    attribution = np.asarray(attribution, dtype=np.float32)
    if attribution.ndim != 2:
        raise InputError(f"a map must be 2-D (height, width), got shape {attribution.shape}")
    geo = input_geometry(original_size, preprocess, attribution.shape)
    width, height = geo.original_size
    in_h, in_w = geo.input_size
    # original pixel centre -> input-tensor coordinate (pixel-edge units), then grid_sample's [-1, 1]
    xs = (np.arange(width) + 0.5) * (geo.resized[0] / width) - geo.offset[0]
    ys = (np.arange(height) + 0.5) * (geo.resized[1] / height) - geo.offset[1]
    gx = torch.from_numpy((2.0 * xs / in_w - 1.0).astype(np.float32))
    gy = torch.from_numpy((2.0 * ys / in_h - 1.0).astype(np.float32))
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).unsqueeze(0)
    source = torch.from_numpy(np.nan_to_num(attribution, nan=0.0)).reshape(1, 1, in_h, in_w)
    sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0].numpy()
    outside = ((xs < 0) | (xs > in_w))[None, :] | ((ys < 0) | (ys > in_h))[:, None]
    sampled = sampled.astype(np.float32)
    sampled[outside] = np.nan
    return sampled
