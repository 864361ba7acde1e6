"""The result of one explanation: raw attribution, the map at image resolution, and what produced it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class AttributionMap:
    """One attribution map, the same shape of record for every method.

    - `raw`: what the method produced before resampling (occlusion: (C, H, W) per-pixel drop in probability at
      input resolution; Grad-CAM: (h, w) at the layer's resolution; guided Grad-CAM: (C, H, W)).
    - `map`: float32 (height, width) at image resolution: the original image when the caller gave `output_size`
      (NaN where the preprocessing cropped the image away), else the input tensor. Positive = evidence for
      `target` (occlusion: hiding that region lowers the target probability by that much).
    - `params`: every parameter that shaped the result (defaults resolved), JSON-serialisable.
    - `probability`: the model's probability for `target` on the unperturbed image.
    - `input_size`: (height, width) of the model input; `output_size`: (width, height) of the original image or None.
    - `info`: how it was computed (seconds, device, batch size); never part of the cache key.
    """

    method: str
    target: int
    probability: float
    raw: np.ndarray
    map: np.ndarray
    params: dict
    input_size: tuple[int, int]
    output_size: tuple[int, int] | None = None
    info: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.map.shape[0])

    @property
    def width(self) -> int:
        return int(self.map.shape[1])

    def peak(self) -> tuple[int, int]:
        """(x, y) pixel of the largest value of the map (NaN ignored); see `peak_location`."""
        y, x = peak_location(self.map)
        return int(x), int(y)

    def describe(self) -> str:
        """One line for captions: method, its parameters, the class index and probability."""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v is not None)
        return f"{self.method} ({shown}) for class {self.target}, p={self.probability:.3f}"

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Arrays plus string metadata, the form the on-disk cache stores (no pickles)."""
        record = {
            "method": self.method,
            "target": int(self.target),
            "probability": float(self.probability),
            "params": self.params,
            "input_size": list(self.input_size),
            "output_size": list(self.output_size) if self.output_size else None,
            "info": self.info,
        }
        arrays = {"raw": np.ascontiguousarray(self.raw, dtype=np.float32),
                  "map": np.ascontiguousarray(self.map, dtype=np.float32)}
        return arrays, {"record": json.dumps(record, sort_keys=True)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> "AttributionMap":
        record = json.loads(metadata["record"])
        return cls(
            method=record["method"],
            target=int(record["target"]),
            probability=float(record["probability"]),
            raw=np.asarray(arrays["raw"], dtype=np.float32),
            map=np.asarray(arrays["map"], dtype=np.float32),
            params=dict(record["params"]),
            input_size=tuple(record["input_size"]),
            output_size=tuple(record["output_size"]) if record.get("output_size") else None,
            info=dict(record.get("info") or {}),
        )


def peak_location(values: np.ndarray) -> tuple[int, int]:
    """(row, col) of a map's highest point. Occlusion maps are flat over each window, so the maximum is a
    plateau: take the centre of the plateau holding the first maximum, not its top-left corner."""
    from scipy import ndimage

    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return 0, 0
    filled = np.where(np.isfinite(values), values, -np.inf)
    first = np.unravel_index(int(np.argmax(filled)), filled.shape)
    top = filled[first]
    plateau, _ = ndimage.label(np.isclose(filled, top, rtol=1e-6, atol=1e-12))
    rows, cols = np.nonzero(plateau == plateau[first])
    # The plateau pixel nearest its centroid (a plateau need not be convex).
    nearest = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(rows[nearest]), int(cols[nearest])

