"""Drawing a map over its image: a colormap blended onto the (often grayscale) scan, as an RGB image, and the
outline of a reference region (the lung field) on top.

The default colormap, `inferno`, rises monotonically in lightness, so it stays readable over grayscale OCT and
X-ray images and when printed in grayscale. Pass the same vmin/vmax to every image of a gallery to compare maps
on one colour scale (`shared_scale` picks one).
"""

from __future__ import annotations

from typing import Iterable

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.errors import InputError
from core.explain.colormaps import DEFAULT_COLORMAP
from core.explain.maps import AttributionMap


def _as_rgb(image) -> np.ndarray:
    """uint8 (H, W, 3) from a PIL image or an array (grayscale replicated to three channels)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"an overlay needs a grayscale or RGB image, got an array of shape {array.shape}")
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.clip(array.astype(float) * scale, 0, 255).astype(np.uint8)
    return array


def _resized(values: np.ndarray, height: int, width: int) -> np.ndarray:
    if values.shape == (height, width):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def default_scale(values: np.ndarray) -> tuple[float, float]:
    """0 to the largest positive value: the map shows evidence for the class (negative values fade out)."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return 0.0, top if top > 0 else 1.0


def shared_scale(maps: Iterable[AttributionMap | np.ndarray], percentile: float = 99.5) -> tuple[float, float]:
    """One (vmin, vmax) for a gallery: 0 to the given percentile of all positive values (robust to one hot pixel)."""
    positives = []
    for item in maps:
        values = item.map if isinstance(item, AttributionMap) else np.asarray(item, dtype=float)
        finite = values[np.isfinite(values)]
        positives.append(finite[finite > 0])
    pooled = np.concatenate(positives) if positives else np.array([])
    top = float(np.percentile(pooled, percentile)) if pooled.size else 0.0
    return 0.0, top if top > 0 else 1.0


def colorize(values: np.ndarray, colormap: str = DEFAULT_COLORMAP, vmin: float | None = None,
             vmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB colours, float strength 0..1) for a 2-D map on the scale vmin..vmax (NaN: strength 0)."""
    values = np.asarray(values, dtype=float)
    low, high = default_scale(values)
    vmin = low if vmin is None else float(vmin)
    vmax = high if vmax is None else float(vmax)
    if not vmax > vmin:
        raise InputError(f"the colour scale needs vmax > vmin, got vmin={vmin}, vmax={vmax}")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise InputError(f"unknown colormap {colormap!r}") from None
    strength = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
    colours = (cmap(strength)[:, :, :3] * 255.0).round().astype(np.uint8)
    strength[~np.isfinite(values)] = 0.0
    return colours, strength


def overlay(image, attribution: AttributionMap | np.ndarray, *, colormap: str = DEFAULT_COLORMAP,
            opacity: float = 0.5, vmin: float | None = None, vmax: float | None = None,
            fade_low: bool = True) -> Image.Image:
    """The image with the map blended on top, as a PIL RGB image of the image's size.

    `opacity` is the colour's weight where the map is at vmax; with `fade_low` the weight falls with the value,
    so regions without evidence show the image untouched (otherwise a uniform `opacity` everywhere, which suits a
    signed scale with vmin < 0). The map is resized bilinearly if its size differs from the image's."""
    if not 0.0 <= float(opacity) <= 1.0:
        raise InputError(f"overlay opacity must be between 0 and 1, got {opacity}")
    base = _as_rgb(image)
    height, width = base.shape[:2]
    values = attribution.map if isinstance(attribution, AttributionMap) else np.asarray(attribution, dtype=float)
    if values.ndim != 2:
        raise InputError(f"a map must be 2-D (height, width), got shape {values.shape}")
    values = _resized(values, height, width)
    colours, strength = colorize(values, colormap, vmin, vmax)
    weight = float(opacity) * (strength if fade_low else np.isfinite(values).astype(float))
    blended = base.astype(float) * (1.0 - weight[:, :, None]) + colours.astype(float) * weight[:, :, None]
    return Image.fromarray(np.clip(blended.round(), 0, 255).astype(np.uint8))


LUNG_OUTLINE_COLOUR = (0, 200, 255)  # cyan: apart from inferno's and viridis' colours


def outline(picture: Image.Image, mask, *, colour: tuple[int, int, int] = LUNG_OUTLINE_COLOUR,
            width: int | None = None) -> Image.Image:
    """`picture` with the edge of a boolean region (e.g. the lung field, core.explain.lung_mask) drawn as a contour
    `width` px wide (default: about 0.4% of the longer side, at least 1); the mask is resized to the picture."""
    from scipy import ndimage

    from core.explain.lung_mask import mask_at

    base = _as_rgb(picture).copy()
    region = mask_at(mask, base.shape[:2])
    width = max(1, round(max(base.shape[:2]) * 0.004)) if width is None else int(width)
    edge = region & ~ndimage.binary_erosion(region, iterations=width, border_value=0)
    base[edge] = colour
    return Image.fromarray(base)


def colorbar(colormap: str = DEFAULT_COLORMAP, height: int = 256, width: int = 16) -> Image.Image:
    """A vertical colour bar (top = vmax) for a legend next to the overlays."""
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(width, axis=1)
    colours, _ = colorize(ramp, colormap, 0.0, 1.0)
    return Image.fromarray(colours)
