"""The one entry point `explain` (any method, same signature) and `compute_maps` for a gallery of images."""

from __future__ import annotations

import dataclasses
import operator
import time
from typing import Callable, Iterable

import torch
from torch import nn

from core.errors import InputError
from core.explain.cache import MapCache, image_fingerprint, map_key
from core.explain.geometry import map_to_image
from core.explain.maps import AttributionMap
from core.explain.model_state import as_batch, borrowed_model, target_probability
from core.explain.registry import get_explainer

Progress = Callable[[int, int], None]


def explain(model: nn.Module, image: torch.Tensor, target: int, method: str = "occlusion", *,
            output_size: tuple[int, int] | None = None, preprocess: dict | None = None,
            cache: MapCache | None = None, model_id: str | None = None, **params) -> AttributionMap:
    """Explain `model`'s probability of class index `target` on one preprocessed image (1, C, H, W) or (C, H, W).

    - `method`: a name from `list_explainers()`; `params` are that method's parameters (see its ParamSpecs),
      plus `multilabel=True` for sigmoid outputs.
    - `output_size`: the original image's (width, height) (PIL's `Image.size`). When given, `map` is resampled onto
      the original image by inverting the eval preprocessing described by `preprocess` (the model's preprocess
      config: `crop_pct`, optional `crop_mode`, and `mean`/`std`, which also define black for occlusion); without
      `preprocess` the image is taken to have been resized straight to the input size. See core.explain.geometry.
    - `cache` + `model_id`: reuse a map computed before for the same model, image content, method, params, target.

    The model is borrowed, not changed: eval mode, frozen parameters and hooks only for the call (see
    core.explain.model_state.borrowed_model), restored even when the forward raises."""
    explainer = get_explainer(method)
    unreachable = getattr(model, "layers_unreachable", None) if explainer.needs_layers else None
    if unreachable:  # an imported ONNX model or TorchScript function (core.models.external says why)
        raise InputError(f"{explainer.title} is not available for this model: {unreachable}")
    given = explainer.resolve_params(params)
    multilabel = bool(given.pop("multilabel", False))
    given = {name: value for name, value in given.items() if value is not None}
    try:
        target = operator.index(target)
    except TypeError:
        raise InputError(f"target must be a class index (int), got {target!r}") from None
    if output_size is not None:
        output_size = (int(output_size[0]), int(output_size[1]))

    if not isinstance(image, torch.Tensor):
        raise InputError(f"explain needs a preprocessed image tensor, got {type(image).__name__}")
    key = None
    if cache is not None:
        if not model_id:
            raise InputError("a map cache needs model_id (e.g. run id + checkpoint hash) to tell models apart")
        result_params = {k: v for k, v in given.items() if k not in explainer.speed_only_params()}
        # (C, H, W) and (1, C, H, W) are the same image: hash one shape
        key = map_key(model_id=model_id, image=image_fingerprint(image.reshape(-1, *image.shape[-3:])), method=method,
                      params={**result_params, "multilabel": multilabel}, target=target,
                      output_size=output_size, preprocess=preprocess)
        hit = cache.get(key)
        if hit is not None:
            return dataclasses.replace(hit, info={**hit.info, "cache": "hit"})

    started = time.perf_counter()
    with borrowed_model(model):
        batch = as_batch(image, model)
        probability = target_probability(model, batch, target, multilabel)
        result = explainer.compute(model, batch, target, preprocess=preprocess, multilabel=multilabel, **given)
    image_map = result["map"]
    if output_size is not None:
        image_map = map_to_image(image_map, output_size, preprocess)
    amap = AttributionMap(
        method=method,
        target=target,
        probability=probability,
        raw=result["raw"],
        map=image_map,
        params={**result["params"], "multilabel": multilabel},
        input_size=(int(batch.shape[2]), int(batch.shape[3])),
        output_size=output_size,
        info={**result["info"], "total_seconds": round(time.perf_counter() - started, 4)},
    )
    if cache is not None:
        cache.put(key, amap)
    return amap


def compute_maps(model: nn.Module, images: Iterable[tuple], method: str = "occlusion", params: dict | None = None,
                 cache: MapCache | None = None, *, model_id: str | None = None, preprocess: dict | None = None,
                 progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, AttributionMap]:
    """Maps for a set of images, in order: `images` yields (image_id, tensor, target) or
    (image_id, tensor, target, output_size). Cached maps are reused; `progress(done, total)` is called after each
    image; `should_stop()` returning True ends early with what is done. No UI calls: run it in a worker thread."""
    items = list(images)
    params = dict(params or {})
    maps: dict[str, AttributionMap] = {}
    if progress:
        progress(0, len(items))
    for done, item in enumerate(items, start=1):
        if should_stop is not None and should_stop():
            break
        if len(item) not in (3, 4):
            raise InputError("compute_maps needs (image_id, tensor, target[, output_size]) items, "
                             f"got {len(item)} values")
        image_id, tensor, target = item[:3]
        output_size = item[3] if len(item) == 4 else None
        maps[str(image_id)] = explain(model, tensor, target, method, output_size=output_size,
                                      preprocess=preprocess, cache=cache, model_id=model_id, **params)
        if progress:
            progress(done, len(items))
    return maps
