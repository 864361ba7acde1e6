"""DICOM pixels: recognise a file, check it cheaply, decode it to 8-bit with the modality LUT, a chosen window and
MONOCHROME1 inverted; and write de-identified copies following the DICOM PS3.15 Basic Application Level
Confidentiality Profile (what is kept, replaced, re-mapped and removed is the tables below), PatientID and UIDs
pseudonymised with the workspace's key (core/store/secret.py).

Decoding is pydicom's (pylibjpeg decodes JPEG baseline, JPEG-LS and JPEG 2000 transfer syntaxes); the values stay
in float until the last step, so 12- and 16-bit data are windowed at full depth and only then made 8-bit."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import InputError

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
BURNED_IN_POLICIES = ("refuse", "keep")
DEIDENTIFIED_BY = "OpenKermany: PS3.15 basic profile, patient characteristics kept"  # LO: <= 64 chars
BURNED_IN_KEPT = "Burned-in annotation NOT removed from the pixels"  # 2nd value when such a file is kept
PATIENT_HASH_PREFIX = "pid-"
_PSEUDONYM = re.compile(r"^pid-[0-9a-f]{60}$")
_PATIENT_HEX = 60  # PatientID is LO (at most 64 characters): "pid-" and 240 bits of the HMAC
# Transfer syntaxes newer than the pydicom in use, named in messages only.
_NEWER_SYNTAXES = {"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
                   "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression", "1.2.840.10008.1.2.4.112": "JPEG XL"}


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM pixels become an 8-bit image.

    window: "file" (the file's VOI LUT or Window Center/Width; the full range when it has neither), "full"
    (min to max of the rescaled values), or a preset name in WINDOW_PRESETS. frames: "refuse" multi-frame files
    with a clear message, or use the "first" frame. burned_in: at ingestion (core.data.ingest), "refuse" files
    whose BurnedInAnnotation is YES, or "keep" them (stored flagged, PatientIdentityRemoved = NO); it does not
    change decoding, so it is left out of the repr (and of the dataset fingerprint built on it)."""

    window: str = "file"
    frames: str = "refuse"
    burned_in: str = field(default="refuse", repr=False)

    def __post_init__(self):
        if self.window not in WINDOWINGS:
            raise InputError(f"DICOM windowing must be one of {', '.join(WINDOWINGS)}, got {self.window!r}")
        if self.frames not in FRAME_POLICIES:
            raise InputError(f"DICOM multi-frame policy must be one of {', '.join(FRAME_POLICIES)}, "
                             f"got {self.frames!r}")
        if self.burned_in not in BURNED_IN_POLICIES:
            raise InputError(f"DICOM burned-in annotation policy must be one of {', '.join(BURNED_IN_POLICIES)}, "
                             f"got {self.burned_in!r}")

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


def may_be_unnamed_dicom(name: str) -> bool:
    """A name that says nothing of its format, whose first bytes decide: no extension (PACS exports), or a UID as
    the name ("1.2.840.113619.2.55.3", whose "extension" is digits). DICOMDIR is an index, not an image."""
    base = os.path.basename(str(name))
    suffix = os.path.splitext(base)[1]
    return (not base.startswith(".") and base.upper() != "DICOMDIR"
            and (not suffix or suffix[1:].isdigit()))


def is_dicom(path: str | Path) -> bool:
    """A .dcm/.dicom file, or a file named without a format (may_be_unnamed_dicom) that has the DICM marker."""
    return is_dicom_name(str(path)) or (may_be_unnamed_dicom(str(path)) and has_dicom_preamble(path))


def _hmac_hex(key: bytes, domain: str, value: str) -> str:
    return hmac.new(key, f"{domain}\n{value}".encode(), hashlib.sha256).hexdigest()


def hash_patient_id(raw: str, key: bytes) -> str:
    """The stored form of a DICOM PatientID: HMAC-SHA256 under the workspace's key (core.store.secret), its first
    60 hex digits (240 bits); never the id itself, and not recoverable by trying every MRN without the key."""
    return PATIENT_HASH_PREFIX + _hmac_hex(key, "patient-id", raw)[:_PATIENT_HEX]


def is_patient_pseudonym(value: str) -> bool:
    """True for a PatientID already in hash_patient_id's form (so it is not hashed a second time)."""
    return bool(_PSEUDONYM.match(value))


def remap_uid(uid: str, key: bytes) -> str:
    """A UID replaced by its pseudonym: the HMAC of the original under the workspace's key, as a UUID-derived UID
    under the 2.25 root (ISO/IEC 9834-8), so the files of one study still share their new StudyInstanceUID."""
    digest = bytes.fromhex(_hmac_hex(key, "uid", str(uid).strip()))
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"


_KEY: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("openkermany_patient_key", default=None)
_DEFAULT_ROOTS: dict[tuple[str | None, str], Path] = {}


@contextlib.contextmanager
def workspace_key(key: bytes):
    """Within this block, PatientIDs read from DICOM headers are hashed with `key` (the workspace's that the data
    is being added to or read for); core.data.ingest sets it around every load."""
    token = _KEY.set(key)
    try:
        yield key
    finally:
        _KEY.reset(token)


def current_key() -> bytes:
    """The key set by workspace_key, else the default workspace's ($CORE_WORKSPACE or ./workspace)."""
    key = _KEY.get()
    if key is not None:
        return key
    from core.store import Workspace
    from core.store.secret import patient_key

    where = (os.environ.get("CORE_WORKSPACE"), os.getcwd())
    if where not in _DEFAULT_ROOTS:  # opening a workspace is not free; this runs once per DICOM header
        _DEFAULT_ROOTS[where] = Workspace.open().root
    return patient_key(_DEFAULT_ROOTS[where])


def _syntax_name(uid) -> str:
    name = _NEWER_SYNTAXES.get(str(uid)) or (uid.name if uid.is_transfer_syntax else "")
    return f"{uid} ({name})" if name and name != str(uid) else f"{uid} (unknown)"


def _transfer_syntax(path: str, ds):
    """The file's transfer syntax, set for a legacy file without Part 10 file meta from how pydicom read it
    (such files hold uncompressed pixels: implicit VR little endian, or explicit VR); InputError when it is not
    one this installation can decode."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = ds.file_meta.get("TransferSyntaxUID", None) if getattr(ds, "file_meta", None) is not None else None
    if not syntax:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        syntax = (ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little is not False
                  else ExplicitVRBigEndian)
        ds.file_meta.TransferSyntaxUID = syntax
    syntax = UID(str(syntax))
    if "PixelData" not in ds:
        return syntax
    try:
        decodable = syntax.is_transfer_syntax and get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):
        decodable = False
    if not decodable:
        raise InputError(f"{path}: DICOM transfer syntax {_syntax_name(syntax)} cannot be decoded here; convert "
                         "the file to an uncompressed, JPEG, JPEG-LS, JPEG 2000 or RLE transfer syntax")
    return syntax


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
    _transfer_syntax(path, ds)
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
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
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
def is_burned_in(ds) -> bool:
    """True when the header says text is burned into the pixels (BurnedInAnnotation = YES)."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


def _ours(ds) -> bool:
    """A file this product de-identified: its method is ours and its PatientID is one of our pseudonyms (a header
    merely claiming our method cannot pass a real id through unhashed: only 60 hex digits pass)."""
    method = ds.get("DeidentificationMethod", "") or ""
    return DEIDENTIFIED_BY in ([str(method)] if isinstance(method, str) else [str(m) for m in method])


def _patient(ds, key: bytes | None) -> str | None:
    raw = str(ds.get("PatientID", "") or "").strip()
    if not raw:
        return None
    if _ours(ds) and is_patient_pseudonym(raw):
        return raw
    return hash_patient_id(raw, key if key is not None else current_key())


def dicom_fields(path: str | Path, key: bytes | None = None) -> dict:
    """The header fields the product uses: sop_instance_uid, patient_id (hashed with `key`, by default the current
    workspace's), modality, bits_stored, photometric, frames, burned_in, characteristics (KEPT_CHARACTERISTICS by
    keyword: what de-identification keeps). Header only; nothing else of the header leaves this function."""
    ds = _read(str(path), header_only=True)
    return {"sop_instance_uid": str(ds.get("SOPInstanceUID", "") or "") or None, "patient_id": _patient(ds, key),
            "modality": str(ds.get("Modality", "") or "") or None, "bits_stored": int(ds.get("BitsStored", 8)),
            "photometric": str(ds.get("PhotometricInterpretation", "")).strip().upper(), "frames": _frames(ds),
            "burned_in": is_burned_in(ds), "characteristics": _characteristics(ds)}


def _characteristics(ds) -> dict[str, str | None]:
    """KEPT_CHARACTERISTICS as text (None when absent or blank), PatientAge as de-identification keeps it."""
    out = {}
    for keyword in KEPT_CHARACTERISTICS:
        text = str(ds.get(keyword, "") or "").strip()
        out[keyword] = (_age(text) if keyword == "PatientAge" else text) or None
    return out


# De-identification: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile, done as a whitelist.
# KEPT: copied unchanged. What describes the pixels (needed to decode them as they were acquired) ...
KEPT_PIXEL_DESCRIPTION = (
    "SOPClassUID", "ImageType", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames", "PixelSpacing",
    "ImagerPixelSpacing", "PixelAspectRatio", "PixelPaddingValue", "PixelPaddingRangeLimit", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "BurnedInAnnotation", "RecognizableVisualFeatures",
    "PixelData")
# ... and the acquisition and patient characteristics results are broken down by (subgroups). PatientSex and
# PatientAge are what the Retain Patient Characteristics Option (113108) keeps; an age over 89 becomes 090Y.
KEPT_CHARACTERISTICS = ("Modality", "ViewPosition", "ImageLaterality", "Laterality", "PatientSex", "PatientAge",
                        "Manufacturer", "ManufacturerModelName")
# Of the LUT sequences, each item's descriptor and data only (their explanations are free text).
KEPT_LUT_SEQUENCES = ("ModalityLUTSequence", "VOILUTSequence")
_LUT_ITEM = ("LUTDescriptor", "LUTData", "ModalityLUTType")
# DUMMY: replaced (action Z/D: the attribute stays, type 2, so the object stays valid). PatientID is the
# pseudonym (hash_patient_id) when the file has one, else empty.
DUMMY = {"PatientName": "Anonymous", "PatientID": "", "PatientBirthDate": "", "StudyDate": "", "StudyTime": "",
         "AccessionNumber": "", "ReferringPhysicianName": "", "StudyID": ""}
# REMAPPED: (action U) replaced by remap_uid, the same original giving the same new UID within a workspace.
REMAPPED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# Everything else is removed (action X): names, ids, dates and times, institutions, physicians, descriptions and
# comments, sequences, and every private tag.
# Recorded in the file (PS3.15 E.1.1 and CID 7050): the profile and the options implemented.
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113108", "Retain Patient Characteristics Option"))
_MAX_AGE_YEARS = 89


def _age(value) -> str:
    text = str(value or "").strip().upper()
    match = re.fullmatch(r"(\d{3})([DWMY])", text)
    if match and match.group(2) == "Y" and int(match.group(1)) > _MAX_AGE_YEARS:
        return "090Y"  # ages over 89 identify (HIPAA Safe Harbor): one bucket for them all
    return text if match else ""


def _code_item(value: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def deidentified_copy(ds, key: bytes, *, keep_burned_in: bool = False):
    """A new pydicom Dataset following the tables above. A file with BurnedInAnnotation = YES is refused (an
    InputError naming the flag) unless keep_burned_in; then it keeps the flag, says PatientIdentityRemoved = NO and
    names in DeidentificationMethod what was not done."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    burned_in = is_burned_in(ds)
    if burned_in and not keep_burned_in:
        raise BurnedInRefused(BURNED_IN_REFUSED)
    out = Dataset()
    for keyword in KEPT_PIXEL_DESCRIPTION + KEPT_CHARACTERISTICS:
        if keyword in ds:
            out[keyword] = ds[keyword]
    if "PatientAge" in out:
        out.PatientAge = _age(ds.PatientAge)
    for seq in KEPT_LUT_SEQUENCES:
        if ds.get(seq):
            items = []
            for item in ds[seq].value:
                kept = Dataset()
                for keyword in _LUT_ITEM:
                    if keyword in item:
                        kept[keyword] = item[keyword]
                items.append(kept)
            setattr(out, seq, Sequence(items))
    for keyword, value in DUMMY.items():
        setattr(out, keyword, value)
    out.PatientID = _patient(ds, key) or ""
    for keyword in REMAPPED_UIDS:
        if str(ds.get(keyword, "") or "").strip():
            setattr(out, keyword, remap_uid(ds[keyword].value, key))
    if "SOPInstanceUID" not in out:  # required: one made from the pixels, so the same image gets the same one
        out.SOPInstanceUID = remap_uid("pixels:" + hashlib.sha256(bytes(ds.get("PixelData", b""))).hexdigest(), key)
    out.PatientIdentityRemoved = "NO" if burned_in else "YES"
    out.DeidentificationMethod = [DEIDENTIFIED_BY, BURNED_IN_KEPT] if burned_in else DEIDENTIFIED_BY
    out.DeidentificationMethodCodeSequence = Sequence([_code_item(*code) for code in METHOD_CODES])
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)
    if "SOPClassUID" in out:
        meta.MediaStorageSOPClassUID = out.SOPClassUID
    meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.file_meta = meta
    out.preamble = b"\x00" * _PREAMBLE  # the original preamble may hold another format's header
    return out


class BurnedInRefused(InputError):
    """A file with burned-in annotation, refused by the default policy."""


BURNED_IN_REFUSED = ("BurnedInAnnotation = YES: text such as the patient's name may be burned into the pixels, "
                     "which de-identification cannot remove; refused. Leave the file out, or choose to keep files "
                     "with burned-in annotation (--allow-burned-in) to store it flagged")


def deidentify_file(path: str | Path, key: bytes, *, keep_burned_in: bool = False,
                    rename: bool = True) -> tuple[Path, bool]:
    """Rewrite a DICOM file as its de-identified copy (atomically), named `<new SOP Instance UID>.dcm` in the same
    folder (rename=False: in place). Returns the new path and whether burned-in annotation was kept."""
    from core.store.files import write_atomically

    path = Path(path)
    copy = deidentified_copy(_read(str(path)), key, keep_burned_in=keep_burned_in)
    target = path
    if rename:
        stem, n = str(copy.SOPInstanceUID), 1
        target = path.parent / f"{stem}.dcm"
        while target != path and target.exists():  # two files of one SOP instance: both kept, told apart
            n += 1
            target = path.parent / f"{stem}-{n}.dcm"
    write_atomically(target, lambda tmp: copy.save_as(tmp, enforce_file_format=True))
    if target != path:
        path.unlink()
    return target, is_burned_in(copy)


def dicom_files(folder: str | Path) -> list[str]:
    """Every DICOM file under `folder` (by suffix, or by the DICM marker for files without one), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__MACOSX")))
        found += [os.path.join(dirpath, n) for n in sorted(filenames)
                  if not n.startswith(".") and is_dicom(os.path.join(dirpath, n))]
    return found
