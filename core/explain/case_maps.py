"""Maps for a gallery's cases: read from the cache without computing, or computed in a stoppable batch (for a
worker thread), and scored against lesion boxes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import pandas as pd
from PIL import Image

from core.errors import InputError
from core.explain.cache import MapCache
from core.explain.case_images import CaseImages
from core.explain.compute import explain
from core.explain.explain_model import ExplainModel
from core.explain.maps import AttributionMap
from core.explain.registry import get_explainer
from core.explain.scoring import score_maps, summarise_scores

Case = tuple[str, int]  # (image_id, target class index)


class _NotCached(Exception):
    pass


class _LookupOnly(MapCache):
    """A cache view that answers from disk and refuses to compute: explain() through it returns the cached map or
    raises _NotCached before any model call (so the cache key is explain()'s own, never re-derived here)."""

    def __init__(self, inner: MapCache):
        super().__init__(inner.root)

    def get(self, key: str) -> AttributionMap:
        found = super().get(key)
        if found is None:
            raise _NotCached
        return found


def case_map(model: ExplainModel, images: CaseImages, image_id: str, target: int, method: str, params: Mapping,
             cache: MapCache | None, *, compute: bool = True, image: Image.Image | None = None
             ) -> AttributionMap | None:
    """The map of one case at original-image resolution: from the cache when there, else computed (compute=True)
    or None (compute=False)."""
    image = image if image is not None else images.image(image_id)
    if not compute and cache is None:
        return None
    given = canonical_params(method, params)
    try:
        return explain(model.model, model.tensor(image), int(target), method, output_size=image.size,
                       preprocess=model.preprocess, cache=cache if compute else _LookupOnly(cache),
                       model_id=model.model_id, multilabel=model.multilabel, **given)
    except _NotCached:
        return None


def canonical_params(method: str, params: Mapping) -> dict:
    """The parameters that differ from the method's defaults: explain()'s cache key hashes the parameters as given,
    so leaving defaults out makes {"baseline": "black"} and {} (the same map) share one cache entry."""
    specs = {spec.name: spec for spec in get_explainer(method).params}
    resolved = get_explainer(method).resolve_params({k: v for k, v in dict(params).items() if v is not None})
    return {k: v for k, v in resolved.items() if v is not None and v != specs[k].default}


@dataclass
class MapsRun:
    """What a batch did: maps computed, found in the cache, failed (with why), whether it was stopped."""

    computed: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0


def explain_cases(model: ExplainModel, images: CaseImages, cases: Sequence[Case], methods: Mapping[str, Mapping],
                  cache: MapCache, *, progress: Callable[[int, int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> MapsRun:
    """Compute (or find in the cache) the map of every case for every method {name: params}, storing them in
    `cache`. `progress(done, total, cached)` after each map; `should_stop()` True ends early. No UI calls: meant
    for a worker thread. Maps are not kept in memory; read them back with case_map(compute=False)."""
    for method, params in methods.items():
        canonical_params(method, params)  # refuse bad parameters before the first image
    total = len(cases) * len(methods)
    run, started, done = MapsRun(), time.perf_counter(), 0
    if progress:
        progress(0, total, 0)
    for image_id, target in cases:
        try:
            image = images.image(image_id)
        except (InputError, OSError) as exc:
            run.failed.append(f"{image_id}: {exc}")
            done += len(methods)
            continue
        for method, params in methods.items():
            if should_stop is not None and should_stop():
                run.stopped = True
                run.seconds = time.perf_counter() - started
                return run
            try:
                amap = case_map(model, images, image_id, target, method, params, cache, image=image)
                if amap.info.get("cache") == "hit":
                    run.cached += 1
                else:
                    run.computed += 1
            except InputError as exc:
                run.failed.append(f"{image_id} ({method}): {exc}")
            done += 1
            if progress:
                progress(done, total, run.cached)
    run.seconds = time.perf_counter() - started
    return run


def cached_maps(model: ExplainModel, images: CaseImages, cases: Sequence[Case], method: str, params: Mapping,
                cache: MapCache) -> dict[str, AttributionMap]:
    """The maps of these cases already in the cache (nothing is computed), by image_id."""
    found = {}
    for image_id, target in cases:
        if image_id in images:
            amap = case_map(model, images, image_id, target, method, params, cache, compute=False)
            if amap is not None:
                found[str(image_id)] = amap
    return found


def score_cases(cases: pd.DataFrame, maps_by_method: Mapping[str, Mapping[str, AttributionMap]],
                boxes_by_id: Mapping[str, list], classes: Sequence[str], tolerance: float = 0.0,
                lung_fields: Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, summary) for the cases' maps against their lesion boxes. `cases` has image_id, label, predicted
    and target_class. scores: one row per (method, image with a map): pointing_hit, positive_share, ...; summary:
    per method, class (plus all classes) and outcome (all / correct / misclassified): pointing-game rate with its
    Wilson interval and the share of positive attribution inside the boxes. `tolerance`: pixels a peak may lie
    outside a box and still count as a hit (the original pointing game used 15). `lung_fields` (image_id ->
    core.explain.lung_mask.LungField, chest X-rays only) adds lung_share and peak_in_lungs to the scores
    (summarise them with core.explain.scoring.summarise_lung_scores)."""
    facts = cases.set_index("image_id")
    score_frames, summary_frames = [], []
    for method, maps in maps_by_method.items():
        records = [{"image_id": image_id, "label": facts.at[image_id, "label"],
                    "predicted": facts.at[image_id, "predicted"], "map": amap,
                    "boxes": list(boxes_by_id.get(image_id, [])),
                    **({"lung_field": lung_fields.get(image_id)} if lung_fields is not None else {})}
                   for image_id, amap in maps.items() if image_id in facts.index]
        if not records:
            continue
        scores = score_maps(records, tolerance=tolerance)
        scores.insert(0, "method", method)
        scores.insert(4, "target_class", [facts.at[r["image_id"], "target_class"] for r in records])
        scores.insert(5, "probability", [maps[r["image_id"]].probability for r in records])
        score_frames.append(scores)
        summary = summarise_scores(scores, classes=classes)
        summary.insert(0, "method", method)
        summary_frames.append(summary)
    if not score_frames:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(score_frames, ignore_index=True), pd.concat(summary_frames, ignore_index=True)
