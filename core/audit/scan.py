"""One pass over a dataset's images: decoded-pixel digest, perceptual hash and the properties the audit compares."""

from __future__ import annotations

import functools
import hashlib
import io
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from core.data.dataset import Dataset
from core.data.dicom import dicom_fields, is_dicom
from core.data.images import NPZ_PREFIX, npz_array
from core.errors import InputError

SCAN_COLUMNS = ("image_id", "split", "label", "patient_id", "pixel_sha256", "phash", "width", "height", "aspect",
                "bit_depth", "channels", "file_format", "intensity_mean", "intensity_std", "jpeg_quality", "error")
_MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


@functools.lru_cache(maxsize=1)
def _ijg_base_table() -> np.ndarray:
    """libjpeg's standard luminance table: at quality 50 the IJG scaling is 100 %, so a quality-50 encode holds it."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="JPEG", quality=50)
    return np.asarray(Image.open(buffer).quantization[0], dtype=np.float64)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_ijg_base_table() * scale + 50) / 100), 1, 255)


def jpeg_quality(im: Image.Image) -> int | None:
    """IJG quality (1-100) whose scaled standard luminance table is nearest the file's; None if not a JPEG.

    Exact for files written by libjpeg-based encoders (PIL, most cameras and PACS exports); for custom tables
    it is the nearest standard quality."""
    tables = getattr(im, "quantization", None)
    if im.format != "JPEG" or not tables or 0 not in tables:
        return None
    luminance = np.asarray(tables[0], dtype=np.float64)
    errors = [np.abs(_ijg_table(q) - luminance).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def _source_properties(path: str) -> dict:
    """File format, stored bit depth and channels, and JPEG quality, from the file itself (not the decoded copy)."""
    if path.startswith(NPZ_PREFIX):
        arr = npz_array(path)
        return {"file_format": "NPZ", "bit_depth": int(arr.dtype.itemsize * 8),
                "channels": int(arr.shape[2]) if arr.ndim == 3 else 1, "jpeg_quality": None}
    if is_dicom(path):
        fields = dicom_fields(path)
        return {"file_format": "DICOM", "bit_depth": fields["bits_stored"],
                "channels": 1 if fields["photometric"].startswith("MONOCHROME") else 3, "jpeg_quality": None}
    with Image.open(path) as im:
        bands = [b for b in im.getbands() if b != "A"]
        return {"file_format": str(im.format), "bit_depth": _MODE_BITS.get(im.mode, 8), "channels": len(bands),
                "jpeg_quality": jpeg_quality(im)}


def scan_image(ds: Dataset, row: int) -> dict:
    """The audit's facts about one image; decode problems become an `error` entry, not an exception."""
    import imagehash

    path = ds.table["path"].iat[row]
    try:
        source = _source_properties(path)
        image = ds.load_image(row)
    except (InputError, OSError) as exc:
        return {"error": str(exc)}
    pixels = np.asarray(image)
    digest = hashlib.sha256(f"{image.mode} {image.size}\n".encode())
    digest.update(pixels.tobytes())
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    width, height = image.size
    return {"pixel_sha256": digest.hexdigest(), "phash": str(imagehash.phash(image)), "width": width,
            "height": height, "aspect": width / height, "intensity_mean": float(grey.mean()),
            "intensity_std": float(grey.std()), **source, "error": None}


def scan_dataset(ds: Dataset, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per image (SCAN_COLUMNS), in the dataset's row order."""
    table = ds.table
    rows = []
    for i in range(len(ds)):
        facts = scan_image(ds, i)
        rows.append({"image_id": table["image_id"].iat[i], "split": table["split"].iat[i] or "unsplit",
                     "label": table["label"].iat[i], "patient_id": table["patient_id"].iat[i], **facts})
        if progress is not None:
            progress(i + 1, len(ds))
    return pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
