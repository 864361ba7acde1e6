"""DICOM files for tests, built with pydicom: any pixel array, photometric, bit depth, sign, rescale, window,
VOI LUT, frames and transfer syntax (uncompressed, JPEG baseline, JPEG 2000 lossless, a declared syntax no decoder
knows, or a legacy file with neither preamble nor file meta); any further header attributes by keyword. The image
itself is the product's minimal DICOM image (core.data.readers.dicom.dicom_image, also its format's example)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from core.data.readers.dicom import dicom_image, save_dicom

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
    ds = dicom_image(pixels, photometric=photometric, bits_stored=bits_stored, sop_uid=sop_uid)
    colour = ds.SamplesPerPixel == 3
    ds.Modality = "CR"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "20190304"
    ds.InstitutionName = INSTITUTION
    ds.StudyDescription = f"Chest PA of {patient_name}"
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if syntax == "explicit":  # as dicom_image wrote it
        if preamble:
            return save_dicom(ds, path)
        ds.save_as(path, implicit_vr=False, little_endian=True)
    elif syntax == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(pixels)).save(buffer, format="JPEG", quality=95)
        del ds.PixelData  # the uncompressed pixels, replaced by their encapsulated JPEG
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buffer.getvalue()])
        if colour:
            ds.PhotometricInterpretation = "YBR_FULL_422"
        save_dicom(ds, path)
    elif syntax == "j2k":
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        save_dicom(ds, path)
    elif syntax == "legacy":
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True)
    elif syntax.startswith("1.2."):
        # pydicom will not write a transfer syntax it does not know: written as HTJ2K (a UID as long), then swapped.
        stand_in = "1.2.840.10008.1.2.4.201"
        assert len(syntax) == len(stand_in), "a declared syntax must be 23 characters long"
        del ds.PixelData
        ds.file_meta.TransferSyntaxUID = stand_in
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])  # a JPEG XL codestream's signature, then nothing
        save_dicom(ds, path)
        path.write_bytes(path.read_bytes().replace(stand_in.encode(), syntax.encode(), 1))
    else:
        raise ValueError(syntax)
    return path


def jpeg_decoded(pixels: np.ndarray) -> np.ndarray:
    """What a JPEG baseline codec gives back for `pixels` at quality 95 (PIL's own encode and decode)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return np.asarray(Image.open(buffer))
