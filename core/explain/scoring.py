"""How well a map agrees with lesion boxes: pointing-game hit and share of positive attribution inside the boxes,
per image and per class, split by correct vs misclassified images.

Kermany et al. (2018) report that occlusion found the region of interest in 94.7% of 491 images: that figure is a
pointing-game rate. Maps must be at original-image resolution (explain(..., output_size=image.size)), since boxes
are in original-image pixels; NaN map pixels (cropped away by the preprocessing) count as no attribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from core.explain.maps import AttributionMap, peak_location

Box = tuple[float, float, float, float]
OUTCOMES = ("all", "correct", "misclassified")


@dataclass(frozen=True)
class BoxScore:
    """Agreement of one map with its image's boxes. `pointing_hit` is False for a map with no positive peak (a
    flat map points nowhere); `positive_share` is NaN when the map has no positive attribution."""

    pointing_hit: bool
    positive_share: float
    peak_x: int
    peak_y: int
    n_boxes: int


def _values(attribution: AttributionMap | np.ndarray) -> np.ndarray:
    values = attribution.map if isinstance(attribution, AttributionMap) else np.asarray(attribution, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"a map must be 2-D (height, width), got shape {values.shape}")
    return values


def box_mask(shape: tuple[int, int], boxes: Sequence[Box], tolerance: float = 0.0) -> np.ndarray:
    """Boolean (height, width) mask of the pixels inside any box (inclusive pixel coordinates x0..x1, y0..y1, as
    in the demo's lesions.csv; clipped to the image), each box grown by `tolerance` pixels on every side."""
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        c0, r0 = max(int(np.floor(x0 - tolerance)), 0), max(int(np.floor(y0 - tolerance)), 0)
        c1, r1 = min(int(np.floor(x1 + tolerance)) + 1, width), min(int(np.floor(y1 + tolerance)) + 1, height)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def pointing_game(attribution: AttributionMap | np.ndarray, boxes: Sequence[Box], tolerance: float = 0.0) -> bool:
    """True when the map's highest point lies inside a box (grown by `tolerance` px, the original pointing game
    used 15 px). A map whose peak is not positive points nowhere: a miss."""
    return score_against_boxes(attribution, boxes, tolerance).pointing_hit


def positive_share_in_boxes(attribution: AttributionMap | np.ndarray, boxes: Sequence[Box]) -> float:
    """Sum of positive attribution inside the boxes / sum of positive attribution anywhere (NaN if none)."""
    return score_against_boxes(attribution, boxes).positive_share


def score_against_boxes(attribution: AttributionMap | np.ndarray, boxes: Sequence[Box],
                        tolerance: float = 0.0) -> BoxScore:
    """Pointing-game hit and positive share for one map against its boxes."""
    values = np.nan_to_num(_values(attribution), nan=-np.inf)
    peak_y, peak_x = peak_location(_values(attribution))
    positive = np.clip(np.nan_to_num(_values(attribution), nan=0.0), 0.0, None)
    total = float(positive.sum())
    if not boxes:
        return BoxScore(False, float("nan"), int(peak_x), int(peak_y), 0)
    inside = box_mask(values.shape, boxes)
    share = float(positive[inside].sum() / total) if total > 0 else float("nan")
    grown = box_mask(values.shape, boxes, tolerance) if tolerance else inside
    hit = bool(values[peak_y, peak_x] > 0 and grown[peak_y, peak_x])
    return BoxScore(hit, share, int(peak_x), int(peak_y), len(boxes))


def score_maps(records: Iterable[dict], tolerance: float = 0.0) -> pd.DataFrame:
    """One row per image from records {image_id, label, predicted, map (AttributionMap or array), boxes}:
    image_id, label, predicted, correct, n_boxes, pointing_hit, positive_share, peak_x, peak_y.
    Images without boxes are kept with n_boxes 0 and empty scores (left out of the summaries)."""
    rows = []
    for record in records:
        boxes = list(record.get("boxes") or [])
        score = score_against_boxes(record["map"], boxes, tolerance)
        rows.append({
            "image_id": str(record["image_id"]),
            "label": record.get("label"),
            "predicted": record.get("predicted"),
            "correct": (record.get("label") == record.get("predicted")) if record.get("predicted") is not None
            else None,
            "n_boxes": score.n_boxes,
            "pointing_hit": score.pointing_hit if boxes else None,
            "positive_share": score.positive_share if boxes else float("nan"),
            "peak_x": score.peak_x,
            "peak_y": score.peak_y,
        })
    columns = ["image_id", "label", "predicted", "correct", "n_boxes", "pointing_hit", "positive_share",
               "peak_x", "peak_y"]
    return pd.DataFrame(rows, columns=columns)


def summarise_scores(scores: pd.DataFrame, classes: Sequence[str] | None = None, alpha: float = 0.05
                     ) -> pd.DataFrame:
    """Per class (plus "all classes") and outcome (all / correct / misclassified): n_images with boxes, pointing
    hits, pointing rate with its Wilson interval, mean and median positive share. Empty groups give n 0 and NaN."""
    scored = scores[scores["n_boxes"] > 0]
    classes = list(classes) if classes is not None else sorted(scored["label"].dropna().astype(str).unique())
    rows = []
    for name in [*classes, "all classes"]:
        of_class = scored if name == "all classes" else scored[scored["label"].astype(str) == name]
        for outcome in OUTCOMES:
            group = of_class
            if outcome != "all":
                group = of_class[of_class["correct"].astype("boolean").fillna(False) == (outcome == "correct")]
            rows.append(_summary_row(name, outcome, group, alpha))
    return pd.DataFrame(rows)


def _summary_row(name: str, outcome: str, group: pd.DataFrame, alpha: float) -> dict:
    n = int(len(group))
    hits = int(group["pointing_hit"].astype(bool).sum()) if n else 0
    if n:
        low, high = proportion_confint(hits, n, alpha=alpha, method="wilson")
    else:
        low = high = float("nan")
    shares = group["positive_share"].astype(float)
    return {
        "class": name,
        "outcome": outcome,
        "n_images": n,
        "pointing_hits": hits,
        "pointing_rate": hits / n if n else float("nan"),
        "pointing_low": float(low),
        "pointing_high": float(high),
        "mean_positive_share": float(shares.mean()) if shares.notna().any() else float("nan"),
        "median_positive_share": float(shares.median()) if shares.notna().any() else float("nan"),
    }
