"""Occlusion's window grid and defaults, without torch: the registry, its cost model and the CLI read them here."""

from __future__ import annotations

import math

BASELINES = ("black", "mean", "blur")
DEFAULT_WINDOW = 20
# Half the window: every pixel is covered by ~4 windows, and tf_efficientnet_lite0 at 224 px needs 484 forwards,
# a few seconds on a laptop CPU (see benchmarks/bench_occlusion.py), well under the one-minute budget.
DEFAULT_STRIDE_FRACTION = 0.5


def default_stride(window: int) -> int:
    return max(1, int(round(int(window) * DEFAULT_STRIDE_FRACTION)))


def window_count(input_hw: tuple[int, int], window: int, stride: int) -> int:
    """How many occluded copies Captum evaluates (its last window is clipped at the edge, so ceil + 1)."""
    return math.prod(math.ceil(max(size - window, 0) / stride) + 1 for size in input_hw)


# Coarse-to-fine occlusion: a coarse pass with windows COARSE_FACTOR fine windows wide, stepping by their own width,
# then the fine window and stride only where the `refine_regions` coarse windows with the largest drop lie. Inside
# those regions the map is exactly the full fine map (every fine window touching them is evaluated); elsewhere it is
# the coarse map, never scaled up. 0 regions: one full pass at the fine stride.
DEFAULT_REFINE_REGIONS = 4
COARSE_FACTOR = 2


def occlusion_plan(input_hw: tuple[int, int], window: int, stride: int, refine_regions: int) -> dict:
    """How occlusion will cover an input: {'coarse_window': side or None (one full pass), 'full_windows': the full
    fine pass's count, 'most_windows': the most copies evaluated (the cost model's figure; overlapping regions cost
    less)}. Coarse-to-fine only where it is cheaper than the full pass."""
    full = window_count(input_hw, window, stride)
    coarse = min(COARSE_FACTOR * int(window), *input_hw)
    if int(refine_regions) <= 0 or coarse <= window:
        return {"coarse_window": None, "full_windows": full, "most_windows": full}
    # fine windows touching one coarse region, per side: those starting within (start - window, start + coarse)
    per_region = math.prod(min(math.ceil((coarse + window) / stride), math.ceil(max(size - window, 0) / stride) + 1)
                           for size in input_hw)
    most = window_count(input_hw, coarse, coarse) + int(refine_regions) * per_region
    if most >= full:
        return {"coarse_window": None, "full_windows": full, "most_windows": full}
    return {"coarse_window": coarse, "full_windows": full, "most_windows": most}
