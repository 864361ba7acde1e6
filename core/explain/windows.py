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
