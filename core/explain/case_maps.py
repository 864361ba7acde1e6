"""Maps for a gallery's cases: the run's model and the test set's images loaded once, maps read from the cache
without computing, a stoppable batch for a worker thread, box scores, and overlay PNG / zip exports."""

from __future__ import annotations

import copy
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from core.errors import InputError
from core.explain.boxes import match_boxes, read_boxes
from core.explain.cache import MapCache
from core.explain.cli import LESIONS_FILE
from core.explain.compute import explain
from core.explain.maps import AttributionMap
from core.explain.model_state import borrowed_model
from core.explain.occlusion import DEFAULT_STRIDE_FRACTION, DEFAULT_WINDOW, window_count
from core.explain.overlay import DEFAULT_COLORMAP, overlay, shared_scale
from core.explain.registry import get_explainer
from core.explain.scoring import score_maps, summarise_scores

BOX_COLOUR = (86, 180, 233)  # Okabe-Ito sky blue: visible over grayscale scans and the warm end of inferno
COLOUR_COLORMAP = "viridis"  # over colour photographs (fundus), a blue-green map stands apart from reds
Case = tuple[str, int]  # (image_id, target class index)


@dataclass(eq=False)
class ExplainModel:
    """A trained run's model ready to explain: its preprocessing, classes, and a `model_id` that changes with the
    weights (the map cache key). Share one across sessions: explain() borrows it and leaves it as it was."""

    model: torch.nn.Module
    card: dict
    classes: list[str]
    preprocess: dict
    model_id: str
    multilabel: bool = False
    _transform: Callable | None = field(default=None, repr=False)
    _seconds_per_image: float | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, run_id: str | None = None, device: str = "cpu") -> "ExplainModel":
        """The checkpoint of a run folder (or checkpoint folder / .safetensors), on `device` ("auto": CUDA if any)."""
        from core.models import load_checkpoint

        model, card = load_checkpoint(run_dir)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        classes = [str(c) for c in card.get("classes") or []]
        if not classes:
            raise InputError(f"{run_dir}: the model card names no classes")
        preprocess = dict(card.get("preprocessing") or {})
        model_id = f"{run_id or Path(run_dir).name}|{getattr(model, 'weights_source', '')}"
        return cls(model, card, classes, preprocess, model_id, multilabel=card.get("kind") == "multilabel")

    @property
    def transform(self) -> Callable:
        if self._transform is None:
            from core.models import build_transform

            self._transform = build_transform(self.preprocess)
        return self._transform

    @property
    def input_hw(self) -> tuple[int, int]:
        size = self.preprocess.get("input_size") or (3, 224, 224)
        return int(size[-2]), int(size[-1])

    def tensor(self, image: Image.Image) -> torch.Tensor:
        """The image preprocessed as at evaluation, (1, C, H, W)."""
        return self.transform(image).unsqueeze(0)

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise InputError(f"class {name!r} is not one of the model's classes ({', '.join(self.classes)})")
        return self.classes.index(name)

    def clone(self) -> "ExplainModel":
        """An independent copy of the weights (same model_id): a worker thread explains with it, so pages using the
        shared model never wait for the worker's lock."""
        return ExplainModel(copy.deepcopy(self.model), self.card, self.classes, self.preprocess, self.model_id,
                            self.multilabel, self._transform, self._seconds_per_image)

    def seconds_per_image(self) -> float:
        """Measured forward time per image (batch of 8, best of two after a warm-up, since the first passes pay
        for allocation), cached: the basis of time estimates."""
        if self._seconds_per_image is None:
            device = next(self.model.parameters()).device
            batch = torch.zeros(8, 3, *self.input_hw, device=device)
            timings = []
            with borrowed_model(self.model), torch.no_grad():
                for _ in range(3):
                    started = time.perf_counter()
                    self.model(batch)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    timings.append(time.perf_counter() - started)
            self._seconds_per_image = min(timings[1:]) / len(batch)
        return self._seconds_per_image

    def expected_seconds(self, method: str, params: Mapping | None = None) -> float:
        """About how long one map takes here: occlusion = windows x forward time; Grad-CAM ~ one forward and one
        backward (x2 when guided)."""
        params = dict(params or {})
        per_image = self.seconds_per_image()
        if method == "occlusion":
            window = int(params.get("window") or DEFAULT_WINDOW)
            stride = params.get("stride") or max(1, int(round(window * DEFAULT_STRIDE_FRACTION)))
            window = min(window, *self.input_hw)
            return window_count(self.input_hw, window, min(int(stride), window)) * per_image
        return per_image * (3.0 if not params.get("guided") else 6.0)


class CaseImages:
    """A test set's images by image_id (the registered dataset, loaded as it was registered)."""

    def __init__(self, dataset, source: str | Path | None = None):
        self.dataset = dataset
        self.source = Path(source) if source else None
        ids = dataset.table["image_id"].astype(str)
        self._rows = dict(zip(ids, range(len(ids))))

    @classmethod
    def from_workspace(cls, ws, test_set_id: str) -> "CaseImages":
        from core.data.ingest import load_registered

        record = ws.get_dataset(test_set_id)
        if record is None:
            raise InputError(f"test set {test_set_id!r} is not registered in this workspace")
        return cls(load_registered(ws, test_set_id), record.get("source"))

    @property
    def table(self) -> pd.DataFrame:
        return self.dataset.table

    def __contains__(self, image_id: str) -> bool:
        return str(image_id) in self._rows

    def image(self, image_id: str) -> Image.Image:
        row = self._rows.get(str(image_id))
        if row is None:
            raise InputError(f"image {image_id!r} is not in this test set")
        return self.dataset.load_image(row)

    def lesions_csv(self) -> Path | None:
        """The lesion boxes CSV beside the test set (the demo's lesions.csv sits in the folder above test/)."""
        if self.source is None:
            return None
        for folder in (self.source, self.source.parent, self.source.parent.parent):
            if (folder / LESIONS_FILE).is_file():
                return folder / LESIONS_FILE
        return None

    def boxes(self, source=None, *, name: str | None = None) -> tuple[dict, list[str]]:
        """Boxes per image_id from a CSV (path, upload or DataFrame; default: lesions_csv()) and the box rows that
        match no image here. ({}, []) when there is no CSV."""
        if source is None:
            source = self.lesions_csv()
            if source is None:
                return {}, []
        table = read_boxes(source, name=name)
        base = Path(source).parent if isinstance(source, (str, Path)) else self.source
        return match_boxes(table, self.table, base_dir=base)


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
                boxes_by_id: Mapping[str, list], classes: Sequence[str], tolerance: float = 0.0
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, summary) for the cases' maps against their lesion boxes. `cases` has image_id, label, predicted
    and target_class. scores: one row per (method, image with a map): pointing_hit, positive_share, ...; summary:
    per method, class (plus all classes) and outcome (all / correct / misclassified): pointing-game rate with its
    Wilson interval and the share of positive attribution inside the boxes. `tolerance`: pixels a peak may lie
    outside a box and still count as a hit (the original pointing game used 15)."""
    facts = cases.set_index("image_id")
    score_frames, summary_frames = [], []
    for method, maps in maps_by_method.items():
        records = [{"image_id": image_id, "label": facts.at[image_id, "label"],
                    "predicted": facts.at[image_id, "predicted"], "map": amap,
                    "boxes": list(boxes_by_id.get(image_id, []))}
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


def suggested_colormap(image: Image.Image) -> str:
    """inferno (monotonic lightness, readable over gray) for grayscale scans, including RGB files whose channels
    are equal; viridis for colour photographs."""
    if image.mode in ("L", "LA", "I", "I;16", "F", "1"):
        return DEFAULT_COLORMAP
    rgb = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
    spread = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max()
    return DEFAULT_COLORMAP if spread <= 8 else COLOUR_COLORMAP


def draw_boxes(image: Image.Image, boxes: Sequence[tuple], width: int | None = None) -> Image.Image:
    """An RGB copy of the image with the lesion boxes outlined (inclusive pixel coordinates)."""
    out = image.convert("RGB")
    if boxes:
        draw = ImageDraw.Draw(out)
        line = width or max(1, round(min(out.size) / 128))
        for x0, y0, x1, y1 in boxes:
            draw.rectangle([x0, y0, x1, y1], outline=BOX_COLOUR, width=line)
    return out


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def overlays_zip(images: CaseImages, maps_by_method: Mapping[str, Mapping[str, AttributionMap]], *,
                 colormap: str | None = None, opacity: float = 0.5, shared: bool = True,
                 files: Mapping[str, bytes] | None = None) -> bytes:
    """A zip of one overlay PNG per (method, case), each method on one colour scale when `shared`, plus the given
    extra files (e.g. {"scores.csv": bytes}) and a maps.json saying what each PNG is."""
    buffer = io.BytesIO()
    listing = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for method, maps in maps_by_method.items():
            vmin, vmax = shared_scale(maps.values()) if shared and maps else (None, None)
            for index, (image_id, amap) in enumerate(maps.items()):
                image = images.image(image_id)
                cmap = colormap or suggested_colormap(image)
                name = f"{method}/{index:04d}-{safe_file_name(image_id)}.png"
                archive.writestr(name, png_bytes(overlay(image, amap, colormap=cmap, opacity=opacity, vmin=vmin,
                                                         vmax=vmax)))
                listing.append({"file": name, "image_id": image_id, "method": method, "target": amap.target,
                                "probability": amap.probability, "params": amap.params, "colormap": cmap,
                                "colour_scale": [vmin, vmax] if vmin is not None else "per image"})
        for file_name, data in (files or {}).items():
            archive.writestr(safe_file_name(file_name), data)
        archive.writestr("maps.json", json.dumps(listing, indent=2))
    return buffer.getvalue()


def safe_file_name(image_id: str) -> str:
    """A tame file name from an image id (ids come from user file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id)).strip("._")[-80:] or "image"
