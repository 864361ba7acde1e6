"""How well a map agrees with lesion boxes: pointing-game hit and share of positive attribution inside the boxes,
per image and per class, split by correct vs misclassified images; and with a reference region (the lung field of
a chest X-ray, core.explain.lung_mask): share of positive attribution inside it and whether the peak is inside.

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


def positive_share_in_mask(attribution: AttributionMap | np.ndarray, mask: np.ndarray) -> float:
    """Sum of positive attribution inside `mask` / sum of positive attribution anywhere (NaN if none); the one
    definition of "share of energy inside" for boxes and regions alike. NaN map pixels count as no attribution."""
    positive = np.clip(np.nan_to_num(_values(attribution), nan=0.0), 0.0, None)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != positive.shape:
        raise ValueError(f"the mask's shape {mask.shape} differs from the map's {positive.shape}")
    total = float(positive.sum())
    return float(positive[mask].sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class RegionScore:
    """Agreement of one map with a reference region: `share` of its positive attribution inside (NaN when the map
    has none), `peak_inside` (False for a map without a positive peak)."""

    share: float
    peak_inside: bool


def score_against_region(attribution: AttributionMap | np.ndarray, mask: np.ndarray) -> RegionScore:
    """Share of positive attribution inside a region (e.g. the lung field) and whether the map's peak lies in it.
    The mask is resized (nearest) to the map when their sizes differ."""
    from core.explain.lung_mask import mask_at

    values = _values(attribution)
    mask = mask_at(mask, values.shape)
    peak_y, peak_x = peak_location(values)
    peak = values[peak_y, peak_x]
    return RegionScore(positive_share_in_mask(values, mask), bool(np.isfinite(peak) and peak > 0
                                                                  and mask[peak_y, peak_x]))


def score_against_boxes(attribution: AttributionMap | np.ndarray, boxes: Sequence[Box],
                        tolerance: float = 0.0) -> BoxScore:
    """Pointing-game hit and positive share for one map against its boxes."""
    values = np.nan_to_num(_values(attribution), nan=-np.inf)
    peak_y, peak_x = peak_location(_values(attribution))
    if not boxes:
        return BoxScore(False, float("nan"), int(peak_x), int(peak_y), 0)
    inside = box_mask(values.shape, boxes)
    share = positive_share_in_mask(attribution, inside)
    grown = box_mask(values.shape, boxes, tolerance) if tolerance else inside
    hit = bool(values[peak_y, peak_x] > 0 and grown[peak_y, peak_x])
    return BoxScore(hit, share, int(peak_x), int(peak_y), len(boxes))


def score_maps(records: Iterable[dict], tolerance: float = 0.0) -> pd.DataFrame:
    """One row per image from records {image_id, label, predicted, map (AttributionMap or array), boxes, and
    optionally lung_field (a core.explain.lung_mask.LungField)}: image_id, label, predicted, correct, n_boxes,
    pointing_hit, positive_share, peak_x, peak_y, plus lung_share and peak_in_lungs when any record has a lung_field
    entry (NaN / None where no lung field was found). Images without boxes are kept with n_boxes 0 and empty box
    scores (left out of the box summaries)."""
    rows = []
    records = list(records)
    with_lungs = any("lung_field" in record for record in records)
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
        if with_lungs:
            field = record.get("lung_field")
            region = score_against_region(record["map"], field.mask) if field is not None and field.found else None
            rows[-1]["lung_share"] = region.share if region else float("nan")
            rows[-1]["peak_in_lungs"] = region.peak_inside if region else None
    columns = ["image_id", "label", "predicted", "correct", "n_boxes", "pointing_hit", "positive_share",
               "peak_x", "peak_y"] + (["lung_share", "peak_in_lungs"] if with_lungs else [])
    return pd.DataFrame(rows, columns=columns)


def summarise_lung_scores(scores: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per method (when `scores` has a method column) over the maps of a gallery: n_maps, n_lung_field (maps whose
    image has a lung field), median_lung_share, peaks_in_lungs, peak_in_lungs_rate with its Wilson interval
    (peak_low, peak_high). Maps whose image has no lung field are counted but not scored."""
    if "lung_share" not in scores.columns or scores.empty:
        return pd.DataFrame()
    groups = scores.groupby("method", sort=False) if "method" in scores.columns else [("all", scores)]
    rows = []
    for method, group in groups:
        scored = group[group["peak_in_lungs"].notna()]
        n = int(len(scored))
        inside = int(scored["peak_in_lungs"].astype(bool).sum())
        low, high = proportion_confint(inside, n, alpha=alpha, method="wilson") if n else (np.nan, np.nan)
        shares = scored["lung_share"].astype(float)
        rows.append({"method": method, "n_maps": int(len(group)), "n_lung_field": n,
                     "median_lung_share": float(shares.median()) if shares.notna().any() else float("nan"),
                     "peaks_in_lungs": inside, "peak_in_lungs_rate": inside / n if n else float("nan"),
                     "peak_low": float(low), "peak_high": float(high)})
    return pd.DataFrame(rows)


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
