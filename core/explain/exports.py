"""Drawing and exporting maps: the colormap for an image, lesion boxes drawn on it, PNG bytes, the gallery zip."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from core.explain.case_images import CaseImages
from core.explain.colormaps import BOX_COLOUR, COLOUR_COLORMAP, DEFAULT_COLORMAP
from core.explain.maps import AttributionMap
from core.explain.overlay import overlay, shared_scale


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
