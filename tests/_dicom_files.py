"""DICOM files for tests, built with pydicom: any pixel array, photometric, bit depth, sign, rescale, window,
VOI LUT, frames and transfer syntax (uncompressed, JPEG baseline, JPEG 2000 lossless, a declared syntax no decoder
knows, or a legacy file with neither preamble nor file meta); any further header attributes by keyword."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000Lossless,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PATIENT_NAME = "Doe^Jane Quincy"
INSTITUTION = "St Example Childrens Hospital"


def write_dicom(path: str | Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                bits_stored: int | None = None, slope: float | None = None, intercept: float | None = None,
                window: tuple[float, float] | None = None, voi_lut: tuple[list[int], list[int]] | None = None,
                patient_id: str | None = "MRN-0042", patient_name: str = PATIENT_NAME, sop_uid: str | None = None,
                syntax: str = "explicit", preamble: bool = True, attributes: dict | None = None,
                private_text: str | None = None) -> Path:
    """Write `pixels` ((H, W), (frames, H, W) or (H, W, 3)) as a DICOM file; returns the path.

    syntax: "explicit", "jpeg", "j2k", "legacy" (implicit VR little endian, no preamble, no file meta: an old
    ACR-NEMA-style file) or a transfer syntax UID declared over encapsulated junk (e.g. JPEG XL's).
    attributes: more header attributes by keyword (BurnedInAnnotation, StudyInstanceUID...); private_text: a
    private tag holding this text."""
    pixels = np.asarray(pixels)
    colour = photometric in ("RGB", "YBR_FULL_422")
    frames = pixels.shape[0] if (pixels.ndim == 3 and not colour) else 1
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.Modality = "CR"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "20190304"
    ds.InstitutionName = INSTITUTION
    ds.StudyDescription = f"Chest PA of {patient_name}"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    signed = pixels.dtype.kind == "i"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
        ds.WindowCenterWidthExplanation = f"Set for {patient_name}"
    for keyword, value in (attributes or {}).items():
        setattr(ds, keyword, value)
    if private_text is not None:
        block = ds.private_block(0x0011, "ACME HOSPITAL", create=True)
        block.add_new(0x01, "LO", private_text)
    if voi_lut is not None:
        descriptor, data = voi_lut
        item = Dataset()
        item.add_new(0x00283002, "US", descriptor)  # LUT Descriptor: entries, first mapped value, bits
        item.add_new(0x00283006, "US", data)  # LUT Data
        item.LUTExplanation = f"LUT for {patient_name}"
        ds.VOILUTSequence = Sequence([item])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    if syntax == "explicit":
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    elif syntax == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buffer.getvalue()])
        if colour:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    elif syntax == "j2k":
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    elif syntax == "legacy":
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        del ds.file_meta
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, implicit_vr=True, little_endian=True)
        return path
    elif syntax.startswith("1.2."):
        # pydicom will not write a transfer syntax it does not know: written as HTJ2K (a UID as long), then swapped.
        stand_in = "1.2.840.10008.1.2.4.201"
        assert len(syntax) == len(stand_in), "a declared syntax must be 23 characters long"
        meta.TransferSyntaxUID = stand_in
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])  # a JPEG XL codestream's signature, then nothing
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.preamble = b"\x00" * 128
        ds.save_as(path, enforce_file_format=True)
        path.write_bytes(path.read_bytes().replace(stand_in.encode(), syntax.encode(), 1))
        return path
    else:
        raise ValueError(syntax)
    if "PixelData" in ds and not meta.TransferSyntaxUID.is_compressed:
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        ds.preamble = b"\x00" * 128
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


def jpeg_decoded(pixels: np.ndarray) -> np.ndarray:
    """What a JPEG baseline codec gives back for `pixels` at quality 95 (PIL's own encode and decode)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return np.asarray(Image.open(buffer))
