"""Turn metric results into plain JSON: floats stay floats, infinities become "inf", NaN becomes null."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def json_number(x: float):
    """A float for JSON: "inf" / "-inf" for infinities, None for NaN."""
    value = float(x)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def to_jsonable(obj):
    """Recursively convert dataclasses, numpy arrays/scalars, tuples and dicts into JSON-safe values."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return json_number(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")
