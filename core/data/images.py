"""The one image opener: cheap header checks at ingestion, full decode to 8-bit "L" or "RGB" later."""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from core.data.dicom import DicomOptions, check_dicom, decode_dicom, dicom_size, is_dicom, is_dicom_name
from core.errors import InputError

# 50 megapixels: several times the largest 2-D medical images we expect (digital mammograms ~14 MP,
# EyePACS fundus photos ~18 MP) while a decoded image still fits comfortably in memory.
DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"})
NPZ_PREFIX = "npz:"

# Never decode a truncated file silently into a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Files that passed check_image, keyed by (path, size, mtime_ns, limit): a re-load costs one stat per file.
_CHECKED: dict[tuple[str, int, int, int], tuple[int, int]] = {}
_CHECKED_MAX = 1_000_000
# Files decoded in full at ingestion, keyed by the sha256 of their bytes (and the pixel limit): the same
# content under another name or folder (a re-upload, a split registered on its own) is not decoded again.
_DECODED: dict[tuple[str, int], tuple[int, int]] = {}


def is_image_name(name: str) -> bool:
    return (os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not os.path.basename(name).startswith(".")) \
        or is_dicom_name(name)


# -- references into MedMNIST-style .npz arrays ---------------------------------------------------
def npz_ref(npz_path: str | Path, split: str, index: int) -> str:
    return f"{NPZ_PREFIX}{Path(npz_path).resolve()}#{split}:{index}"


def parse_npz_ref(ref: str) -> tuple[str, str, int]:
    try:
        body = ref[len(NPZ_PREFIX):]
        file, _, rest = body.rpartition("#")
        split, _, index = rest.partition(":")
        return file, split, int(index)
    except ValueError:
        raise InputError(f"{ref}: not a valid npz image reference (npz:<file>#<split>:<index>)") from None


@functools.lru_cache(maxsize=4)
def _npz_images(file: str, split: str, mtime_ns: int) -> np.ndarray:
    # mtime in the key so an updated file is read again; a few cached arrays per worker process.
    with np.load(file, allow_pickle=False) as data:
        return data[f"{split}_images"]


def npz_array(ref: str) -> np.ndarray:
    """The pixel array a `npz:` reference points to (H, W) or (H, W, 3), uint8."""
    file, split, index = parse_npz_ref(ref)
    try:
        images = _npz_images(file, split, os.stat(file).st_mtime_ns)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{file}: cannot read {split}_images ({exc})") from None
    if not 0 <= index < len(images):
        raise InputError(f"{ref}: index {index} outside the {len(images)} {split} images")
    return images[index]


# -- header checks (ingestion) --------------------------------------------------------------------
def _too_many_pixels(path: str, w: int, h: int, max_pixels: int) -> str:
    return f"{path}: image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}"


def _header_size_unchecked(path: str) -> tuple[int, int] | None:
    """(width, height) read by the format plugin alone, for the message when PIL's own bomb check refuses the file
    (Image.open runs that check before the size is visible). Only the header is parsed; no pixel is decoded."""
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is not None and not accept(prefix):
                    continue
                fp.seek(0)
                try:
                    return tuple(factory(fp, path).size)
                except (OSError, SyntaxError, ValueError, IndexError, TypeError, struct.error, EOFError):
                    continue
    except OSError:
        return None
    return None


def _open_header(path: str, max_pixels: int) -> Image.Image:
    """Image.open reads only the header; PIL's own bomb check becomes an InputError too.

    (No warnings.catch_warnings here: it swaps process-wide filters, which races in a threaded server.
    Our pixel limit sits below PIL's warning threshold, so its warning only fires for raised limits.)
    """
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image PIL can read (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        size = _header_size_unchecked(path)
        if size is None:
            raise InputError(f"{path}: image is too large: {exc} (decompression-bomb guard; our limit is "
                             f"{max_pixels:,} pixels)") from None
        # image_size() passes no real limit; PIL's refusal threshold is then the limit that applied.
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise InputError(_too_many_pixels(path, *size, limit) + " (decompression-bomb guard)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read image header ({exc})") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise InputError(_too_many_pixels(path, w, h, max_pixels))
    if w < 1 or h < 1:
        im.close()
        raise InputError(f"{path}: image has no pixels ({w}x{h})")
    return im


def _jpeg_complete(path: str, size: int) -> bool:
    # A complete JPEG ends with the EOI marker FFD9; cameras and PACS exports sometimes append
    # a little padding, so look at the last 1 KiB rather than the last two bytes only.
    with open(path, "rb") as f:
        f.seek(max(0, size - 1024))
        tail = f.read()
    return b"\xff\xd9" in tail


def _tiff_complete(im: Image.Image, size: int) -> bool:
    # Every strip/tile must lie inside the file; a truncated TIFF points past its end.
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return True
    for off_tag, len_tag in ((273, 279), (324, 325)):
        offsets, lengths = tags.get(off_tag), tags.get(len_tag)
        if offsets is None or lengths is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        lengths = lengths if isinstance(lengths, tuple) else (lengths,)
        if any(o + n > size for o, n in zip(offsets, lengths)):
            return False
    return True


def check_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Cheap ingestion check (header, plus an end-of-data check per format); returns (width, height).

    Finds non-images, corrupt headers, truncated JPEG/PNG/TIFF files and over-large images from headers
    first, then decodes each file in full once per content (cached by its sha256): corrupt scan data, a
    truncated JPEG given an end marker, an all-NaN float TIFF are found here, not in the middle of a run.
    """
    path = str(path)
    if path.startswith(NPZ_PREFIX):
        arr = npz_array(path)
        return int(arr.shape[1]), int(arr.shape[0])
    try:
        st = os.stat(path)
    except OSError:
        raise InputError(f"{path}: file not found") from None
    size = st.st_size
    key = (path, size, st.st_mtime_ns, max_pixels)
    if key in _CHECKED:
        return _CHECKED[key]
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if is_dicom(path):
        dims = _CHECKED[key] = check_dicom(path, max_pixels)
        return dims
    im = _open_header(path, max_pixels)
    try:
        fmt = im.format
        dims = im.size
        if fmt == "JPEG" and not _jpeg_complete(path, size):
            raise InputError(f"{path}: truncated JPEG (no end-of-image marker)")
        if fmt == "TIFF" and not _tiff_complete(im, size):
            raise InputError(f"{path}: truncated TIFF (image data runs past the end of the file)")
        if fmt == "PNG":
            # verify() walks the chunks and their CRCs without inflating pixels.
            try:
                im.verify()
            except Exception as exc:  # PIL raises several types (SyntaxError, OSError, struct.error)
                raise InputError(f"{path}: corrupt or truncated PNG ({exc})") from None
    finally:
        im.close()
    _decode_once(path, max_pixels)
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[key] = dims
    return dims


def _decode_once(path: str, max_pixels: int) -> None:
    """Decode the file in full once per content (scan data can be corrupt behind a valid header and end marker)."""
    import hashlib

    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if (digest, max_pixels) in _DECODED:
        return
    image = open_image(path, max_pixels, verify=True)
    if len(_DECODED) >= _CHECKED_MAX:
        _DECODED.clear()
    _DECODED[(digest, max_pixels)] = image.size


def _verify_jpeg(path: str) -> None:
    """Decode the JPEG strictly with libjpeg-turbo (simplejpeg): its "corrupt data" warnings, which PIL ignores
    (garbage in the scan data, a file cut short and given an end marker, decoded half grey), are errors here."""
    import simplejpeg  # lazy: only ingestion checks and inference verify pixels this way

    with open(path, "rb") as f:
        data = f.read()
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        raise InputError(f"{path}: corrupt JPEG data ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only (for summaries such as `inspect`)."""
    path = str(path)
    if path.startswith(NPZ_PREFIX):
        arr = npz_array(path)
        return int(arr.shape[1]), int(arr.shape[0])
    if is_dicom(path):
        return dicom_size(path)
    im = _open_header(path, max_pixels=2**62)
    try:
        return im.size
    finally:
        im.close()


# -- full decode ----------------------------------------------------------------------------------
def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit "L".

    Integers are scaled by the bit depth actually in use (8, 10, 12, 14 or 16 bits, judged from the
    largest value), so a 12-bit detector image is not left near-black by a blind /257 and images from
    one device keep their relative brightness. Floats (and >16-bit data) are min-max stretched.
    """
    arr = np.asarray(im)
    if arr.dtype.kind in "ui":
        arr = np.clip(arr.astype(np.int64), 0, None)
        peak = int(arr.max()) if arr.size else 0
        for bits in (8, 10, 12, 14, 16):
            if peak <= (1 << bits) - 1:
                scaled = arr.astype(np.float32) * (255.0 / ((1 << bits) - 1))
                return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError("no finite pixel value (every pixel is NaN or infinite)")
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    scaled = np.zeros(arr.shape, np.float32) if hi <= lo else (np.where(finite, arr, lo) - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _over_black(im: Image.Image, mode: str) -> Image.Image:
    # Transparent areas become black (the background of most medical images), not stray colours.
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert(mode)


def to_standard_mode(im: Image.Image) -> Image.Image:
    """Any PIL mode -> "L" (greyscale sources) or "RGB" (colour sources)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(im)
    if mode in ("LA", "La"):
        return _over_black(im, "L")
    if mode in ("RGBA", "RGBa", "PA"):
        return _over_black(im, "RGB")
    if mode == "P":
        return _over_black(im, "RGB") if "transparency" in im.info else im.convert("RGB")
    # CMYK, YCbCr, LAB, HSV, RGBX ...: PIL knows the colour conversion.
    return im.convert("RGB")


def _array_to_image(arr: np.ndarray, ref: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        return to_standard_mode(Image.fromarray(np.ascontiguousarray(arr)))
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L")
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    raise InputError(f"{ref}: array of shape {arr.shape} is not a 2-D greyscale or RGB image")


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, dicom: DicomOptions | None = None,
               verify: bool = False) -> Image.Image:
    """Decode an image file (or `npz:` reference) fully: EXIF-rotated, mode "L" or "RGB".

    DICOM files (.dcm, or the DICM marker) are decoded by core.data.dicom with the windowing in `dicom`.
    Every failure (missing, not an image, truncated, too many pixels) is an InputError naming the file.
    verify: also decode JPEGs strictly (ingestion, inference), so corrupt scan data is an error, not grey.
    """
    path = str(path)
    if path.startswith(NPZ_PREFIX):
        return _array_to_image(npz_array(path), path)
    if is_dicom(path):
        return decode_dicom(path, max_pixels, dicom)
    src = _open_header(path, max_pixels)
    try:
        src.load()
        if verify and src.format == "JPEG":
            _verify_jpeg(path)
        # exif_transpose also handles TIFF orientation tags; it returns a new image when it rotates.
        rotated = ImageOps.exif_transpose(src) or src
        out = to_standard_mode(rotated)
        if out is src:
            out = src.copy()  # detach from the file handle closed below
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from None
    finally:
        src.close()
    return out
