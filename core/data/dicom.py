"""DICOM pixels: recognise a file, check it cheaply, decode it to 8-bit with the modality LUT, a chosen window and
MONOCHROME1 inverted; and write de-identified copies that keep only the pixel data and the fields we use.

Decoding is pydicom's (pylibjpeg decodes JPEG baseline, JPEG-LS and JPEG 2000 transfer syntaxes); the values stay
in float until the last step, so 12- and 16-bit data are windowed at full depth and only then made 8-bit."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import SKIP_BAD_HINT, InputError

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_PREAMBLE = 128
# Window presets (centre, width) in modality units (Hounsfield units for CT); the usual radiology settings.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
WINDOWINGS = ("file", "full", *WINDOW_PRESETS)
FRAME_POLICIES = ("refuse", "first")
_GREY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")
DEIDENTIFIED_BY = "OpenKermany: pixel data and used fields only; PatientID hashed"  # LO: <= 64 chars
PATIENT_HASH_PREFIX = "pid-"


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM pixels become an 8-bit image.

    window: "file" (the file's VOI LUT or Window Center/Width; the full range when it has neither), "full"
    (min to max of the rescaled values), or a preset name in WINDOW_PRESETS. frames: "refuse" multi-frame files
    with a clear message, or use the "first" frame."""

    window: str = "file"
    frames: str = "refuse"

    def __post_init__(self):
        if self.window not in WINDOWINGS:
            raise InputError(f"DICOM windowing must be one of {', '.join(WINDOWINGS)}, got {self.window!r}")
        if self.frames not in FRAME_POLICIES:
            raise InputError(f"DICOM multi-frame policy must be one of {', '.join(FRAME_POLICIES)}, "
                             f"got {self.frames!r}")

    @property
    def is_default(self) -> bool:
        return self == DicomOptions()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "DicomOptions":
        return cls(**(data or {}))


DEFAULT_OPTIONS = DicomOptions()


def has_dicom_preamble(path: str | Path) -> bool:
    """True when bytes 128-131 are 'DICM' (the Part 10 file marker), whatever the file is called."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PREAMBLE + 4)
    except OSError:
        return False
    return len(head) == _PREAMBLE + 4 and head[_PREAMBLE:] == b"DICM"


def is_dicom_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in DICOM_SUFFIXES and not os.path.basename(name).startswith(".")


def is_dicom(path: str | Path) -> bool:
    """A .dcm/.dicom file, or any file with the DICM marker (PACS exports are often extension-less)."""
    return is_dicom_name(str(path)) or (not os.path.splitext(str(path))[1] and has_dicom_preamble(path))


def hash_patient_id(raw: str) -> str:
    """The stored form of a DICOM PatientID: never the id itself."""
    return PATIENT_HASH_PREFIX + hashlib.sha256(f"openkermany-patient\n{raw}".encode()).hexdigest()[:16]


def _read(path: str, header_only: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # force: a .dcm written without the 128-byte preamble is still DICOM; a non-DICOM file then fails below.
        ds = pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(f"{path}: DICOM file without an image (no Rows/Columns; a report or other non-image object)")
    return ds


def _frames(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check_geometry(path: str, ds, max_pixels: int, options: DicomOptions) -> tuple[int, int]:
    w, h = int(ds.Columns), int(ds.Rows)
    if w < 1 or h < 1:
        raise InputError(f"{path}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise InputError(f"{path}: image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}")
    frames = _frames(ds)
    if frames > 1 and options.frames == "refuse":
        raise InputError(f"{path}: multi-frame DICOM ({frames} frames, e.g. a cine loop or tomosynthesis); only "
                         "single images are classified. Choose 'first frame' to use frame 1 of each such file.")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _GREY + _COLOUR:
        raise InputError(f"{path}: photometric interpretation {photometric or '(none)'} is not supported "
                         f"(supported: {', '.join(_GREY + _COLOUR)})")
    return w, h


def check_dicom(path: str | Path, max_pixels: int, options: DicomOptions = DEFAULT_OPTIONS) -> tuple[int, int]:
    """Ingestion check without decoding: a DICOM image, within the pixel limit, and (for uncompressed data) all
    its pixel bytes present. Returns (width, height)."""
    path = str(path)
    ds = _read(path)
    dims = _check_geometry(path, ds, max_pixels, options)
    if "PixelData" not in ds:
        raise InputError(f"{path}: DICOM file without pixel data")
    if not ds.file_meta.get("TransferSyntaxUID", None) or not ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = (int(ds.Rows) * int(ds.Columns) * _frames(ds) * int(ds.get("SamplesPerPixel", 1))
                    * int(ds.get("BitsAllocated", 8)) + 7) // 8
        if len(ds.PixelData) < expected:
            raise InputError(f"{path}: truncated DICOM pixel data ({len(ds.PixelData):,} of {expected:,} bytes)")
    return dims


def dicom_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    ds = _read(str(path), header_only=True)
    return int(ds.Columns), int(ds.Rows)


def _pixels(path: str, ds) -> np.ndarray:
    from pydicom.pixels import pixel_array

    try:
        # index=0 decodes only the first frame; single-frame files have just that one.
        return pixel_array(ds, index=0) if _frames(ds) > 1 else ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types (RuntimeError, ValueError, NotImplementedError)
        raise InputError(f"{path}: cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from None


def _to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:
        return np.zeros(values.shape, np.uint8)
    return np.rint(np.clip((values - low) * (255.0 / (high - low)), 0, 255)).astype(np.uint8)


def _window_dataset(center: float, width: float, function: str = "LINEAR"):
    # A bare header whose output range is 0-255 (8 bits stored, unsigned, no rescale), so pydicom's windowing
    # of already rescaled values lands directly in 8-bit.
    from pydicom.dataset import Dataset

    window = Dataset()
    window.WindowCenter, window.WindowWidth, window.VOILUTFunction = center, width, function
    window.BitsStored, window.PixelRepresentation, window.PhotometricInterpretation = 8, 0, "MONOCHROME2"
    return window


def grey_to_8bit(arr: np.ndarray, ds, window: str) -> np.ndarray:
    """Stored greyscale values -> 8-bit: modality LUT (Rescale Slope/Intercept or LUT), then the window."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if window == "file" and ds.get("VOILUTSequence"):
        # A LUT is indexed by whole modality values.
        lut = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = _to_8bit(np.asarray(lut, dtype=np.float64), 0.0, float(2**bits - 1))
    elif window == "file" and "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = (v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v
                         for v in (ds.WindowCenter, ds.WindowWidth))
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        out = np.rint(apply_windowing(values, _window_dataset(float(center), float(width), function))).astype(
            np.uint8)
    elif window in WINDOW_PRESETS:
        center, width = WINDOW_PRESETS[window]
        out = np.rint(apply_windowing(values, _window_dataset(center, width))).astype(np.uint8)
    else:  # "full", or "file" for a file without any window
        out = _to_8bit(values, float(values.min()), float(values.max()))
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: the lowest value is white
    return out


def decode_dicom(path: str | Path, max_pixels: int, options: DicomOptions | None = None) -> Image.Image:
    """A DICOM image as PIL "L" (greyscale) or "RGB" (colour), following `options`."""
    path, options = str(path), options or DEFAULT_OPTIONS
    ds = _read(path)
    _check_geometry(path, ds, max_pixels, options)
    arr = _pixels(path, ds)
    if int(ds.get("SamplesPerPixel", 1)) == 1:
        return Image.fromarray(grey_to_8bit(arr, ds, options.window), mode="L")
    # Colour: pydicom has already converted YBR to RGB; deeper than 8 bits is scaled by its stored depth.
    if arr.dtype != np.uint8:
        arr = _to_8bit(arr.astype(np.float64), 0.0, float(2 ** int(ds.BitsStored) - 1))
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


# -- header fields the readers use, and de-identified copies ------------------------------------
def dicom_fields(path: str | Path) -> dict:
    """The header fields the product uses: sop_instance_uid, patient_id (hashed), modality, bits_stored,
    photometric, frames. Header only; nothing else of the header leaves this function."""
    ds = _read(str(path), header_only=True)
    raw = str(ds.get("PatientID", "") or "").strip()
    ours = str(ds.get("PatientIdentityRemoved", "")).upper() == "YES" and \
        str(ds.get("DeidentificationMethod", "")) == DEIDENTIFIED_BY
    patient = (raw if ours else hash_patient_id(raw)) if raw else None
    return {"sop_instance_uid": str(ds.get("SOPInstanceUID", "") or "") or None, "patient_id": patient,
            "modality": str(ds.get("Modality", "") or "") or None, "bits_stored": int(ds.get("BitsStored", 8)),
            "photometric": str(ds.get("PhotometricInterpretation", "")).strip().upper(), "frames": _frames(ds)}


# What a de-identified copy keeps: the image pixel module, the modality and VOI LUT fields decoding needs,
# and the SOP identifiers labels can be matched by. Free-text fields (explanations, descriptions) are not kept.
_KEPT = ("SOPClassUID", "SOPInstanceUID", "Modality", "SamplesPerPixel", "PhotometricInterpretation", "Rows",
         "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
         "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
         "VOILUTFunction", "PixelData")
_LUT_ITEM = ("LUTDescriptor", "LUTData", "ModalityLUTType")


def deidentified_copy(ds):
    """A new pydicom Dataset holding only _KEPT (+ LUT sequences' descriptor and data) and the hashed PatientID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    out = Dataset()
    for keyword in _KEPT:
        if keyword in ds:
            out[keyword] = ds[keyword]
    for seq in ("ModalityLUTSequence", "VOILUTSequence"):
        if ds.get(seq):
            items = []
            for item in ds[seq].value:
                kept = Dataset()
                for keyword in _LUT_ITEM:
                    if keyword in item:
                        kept[keyword] = item[keyword]
                items.append(kept)
            setattr(out, seq, Sequence(items))
    raw = str(ds.get("PatientID", "") or "").strip()
    if raw:
        already = str(ds.get("DeidentificationMethod", "")) == DEIDENTIFIED_BY
        out.PatientID = raw if already else hash_patient_id(raw)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEIDENTIFIED_BY
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out.file_meta = meta
    out.preamble = b"\x00" * _PREAMBLE  # the original preamble may hold another format's header
    return out


def deidentify_file(path: str | Path) -> None:
    """Rewrite a DICOM file in place as its de-identified copy (atomically)."""
    from core.store.files import write_atomically

    path = str(path)
    copy = deidentified_copy(_read(path))
    write_atomically(path, lambda tmp: copy.save_as(tmp, enforce_file_format=True))


def dicom_files(folder: str | Path) -> list[str]:
    """Every DICOM file under `folder` (by suffix, or by the DICM marker for files without one), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__MACOSX")))
        found += [os.path.join(dirpath, n) for n in sorted(filenames)
                  if not n.startswith(".") and is_dicom(os.path.join(dirpath, n))]
    return found


def deidentify_tree(folder: str | Path, skip_bad: bool = False) -> list[str]:
    """De-identify every DICOM file under `folder` in place. A file that cannot be read is deleted (its header
    must not stay behind) and listed in the returned problems; without skip_bad that is an InputError."""
    problems = []
    for path in dicom_files(folder):
        try:
            deidentify_file(path)
        except InputError as exc:
            os.unlink(path)
            problems.append(f"{exc} (removed: it could not be de-identified)")
    if problems and not skip_bad:
        raise InputError(f"{len(problems)} DICOM file(s) could not be read: {'; '.join(problems[:5])}. "
                         f"{SKIP_BAD_HINT}.")
    return problems
