"""TensorBoard-style smoothing of training curves: a debiased exponential moving average."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError

DEFAULT_SMOOTHING = 0.6  # TensorBoard's default slider position


def ema_smooth(values, weight: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """Smooth a curve the way TensorBoard's scalar charts do.

    s_t = (sum_i w^i x_{t-i}) / (sum_i w^i) over the finite points so far: the exponential moving average
    divided by (1 - w^n), so the first points are not pulled towards zero. Non-finite points (NaN, inf)
    are shown as they are and do not enter the average; a constant curve is returned unchanged.
    weight: 0 (no smoothing) up to, not including, 1.
    """
    weight = float(weight)
    if not 0.0 <= weight < 1.0:
        raise InputError(f"smoothing weight must be in [0, 1), got {weight}")
    raw = np.asarray(values, dtype=np.float64).reshape(-1)
    if raw.size == 0 or weight == 0.0:
        return raw.copy()
    finite = np.isfinite(raw)
    if finite.all() and np.all(raw == raw[0]):
        return raw.copy()  # TensorBoard leaves constant series alone (no floating-point wobble)
    # pandas' adjusted EWM *is* the debiased EMA: weights (1-alpha)^i normalised by their sum.
    # ignore_na=True makes skipped points cost no decay, as TensorBoard skips them.
    series = pd.Series(np.where(finite, raw, np.nan))
    smoothed = series.ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean().to_numpy()
    return np.where(finite, smoothed, raw)
