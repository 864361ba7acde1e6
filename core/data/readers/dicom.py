"""DICOM datasets: a folder (or zip) of .dcm or extension-less DICOM files, labelled by class folders or by a CSV
keyed by SOP Instance UID or file name; patient ids come from the header's PatientID, hashed. The patient and
acquisition characteristics de-identification keeps (core.data.dicom.KEPT_CHARACTERISTICS) become the Dataset's
subgroup columns (HEADER_SUBGROUPS; the age in AGE_BANDS). InstitutionName is not one: de-identification removes it
(the Basic Profile's action X), so a site column comes from a label CSV or a manifest."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, subgroup_column_name
from core.data.dicom import (DicomOptions, check_dicom, dicom_fields, dicom_files, has_dicom_preamble, is_dicom_name,
                              may_be_unnamed_dicom)
from core.data.images import IMAGE_SUFFIXES
from core.data.readers.common import ProblemLog, custom_task, finish, split_name
from core.data.readers.folders import class_folders, detect_folder_task
from core.data.readers.manifest import manifest_columns, read_csv_table
from core.data.tasks import Task, get_task
from core.data.readers.registry import DatasetFormat, example_pixels
from core.errors import InputError

SOP_COLUMNS = ("sop_instance_uid", "sopinstanceuid", "sop_uid", "sopuid")
_SNIFF_LIMIT = 200  # files looked at before deciding a tree holds no DICOM

# Subgroup columns read from each file's header: column name -> attribute keyword (all of them among what
# de-identification keeps, so an uploaded set and a server folder give the same columns). A column is added when
# at least one file has a value; a file without one gets none (the "(missing)" subgroup).
HEADER_SUBGROUPS = {"sex": "PatientSex", "age": "PatientAge", "view": "ViewPosition", "manufacturer": "Manufacturer",
                    "model": "ManufacturerModelName"}
# The age bands (years, lower bound included): infants, young children, children, adolescents, adults, older adults.
AGE_BANDS = ((0, 1), (1, 5), (5, 12), (12, 18), (18, 65), (65, None))
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def age_years(value: str | None) -> float | None:
    """A DICOM Age String ("005Y", "018M", "003W", "010D") in years; None when blank or not an Age String."""
    match = re.fullmatch(r"(\d{3})([DWMY])", str(value or "").strip().upper())
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] if match else None


def age_band(value: str | None) -> str | None:
    """The AGE_BANDS band of a DICOM Age String ("018M" -> "1-5 y"); None when the age is unknown."""
    years = age_years(value)
    if years is None:
        return None
    low, high = next((low, high) for low, high in AGE_BANDS if high is None or years < high)
    return f"{low}+ y" if high is None else f"{low}-{high} y"


def header_subgroups(characteristics: dict) -> dict[str, str | None]:
    """The HEADER_SUBGROUPS values of one file, from core.data.dicom.dicom_fields' `characteristics`."""
    out = {name: characteristics.get(keyword) for name, keyword in HEADER_SUBGROUPS.items()}
    out["age"] = age_band(out["age"])
    return out


def is_dicom_tree(root: Path) -> bool:
    """True when the first data file met under root is DICOM (by suffix or DICM marker); cheap on big trees."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__MACOSX")))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            unnamed = may_be_unnamed_dicom(name)
            if is_dicom_name(name) or (unnamed and has_dicom_preamble(os.path.join(dirpath, name))):
                return True
            if suffix in IMAGE_SUFFIXES or suffix == ".npz":
                return False
            seen += 1
            if seen >= _SNIFF_LIMIT:
                return False
    return False


def read_label_table(path: Path) -> tuple[pd.DataFrame, dict] | None:
    """A CSV read as a possible DICOM label table: the table and its manifest columns plus "sop" (the SOP Instance
    UID column, or None); None when the file is not a readable CSV."""
    try:
        table = read_csv_table(path)
    except InputError:
        return None
    cols = manifest_columns(table)
    by_lower = {c.lower(): c for c in table.columns}
    cols["sop"] = next((by_lower[c] for c in SOP_COLUMNS if c in by_lower), None)
    return table, cols


def _label_csv(root: Path) -> tuple[Path, pd.DataFrame, dict] | None:
    """The CSV beside the DICOM files that labels them (by SOP Instance UID or file name), if there is one."""
    found = []
    for path in sorted(root.glob("*.csv")):
        read = read_label_table(path)
        if read is None:
            continue
        table, cols = read
        if cols["label"] and (cols["sop"] or cols["path"]):
            found.append((path, table, cols))
    if len(found) > 1:
        raise InputError(f"{root}: several label CSVs ({', '.join(f[0].name for f in found)}); keep one")
    return found[0] if found else None


def _csv_lookup(table: pd.DataFrame, cols: dict) -> dict[str, dict]:
    """CSV records by every key a file may be named by: SOP Instance UID, relative path, file name, stem."""
    out = {}
    for record in table.to_dict("records"):
        if cols["sop"] and record[cols["sop"]].strip():
            out[f"uid:{record[cols['sop']].strip()}"] = record
        if cols["path"] and record[cols["path"]].strip():
            name = record[cols["path"]].strip().replace("\\", "/")
            out[f"name:{name}"] = record
            out[f"name:{os.path.splitext(name)[0]}"] = record
    return out


def _csv_record(lookup: dict, fields: dict, rel: str) -> dict | None:
    name = rel.rsplit("/", 1)[-1]
    keys = [f"uid:{fields['sop_instance_uid']}"] if fields["sop_instance_uid"] else []
    keys += [f"name:{k}" for k in (rel, os.path.splitext(rel)[0], name, os.path.splitext(name)[0])]
    return next((lookup[k] for k in keys if k in lookup), None)


def _labelled_files(root: Path, task_obj: Task | None, log: ProblemLog) -> tuple[list[tuple], Task]:
    """(path, rel, label, split, csv patient) for every DICOM file, with the task they are labelled in."""
    files = dicom_files(root)
    if not files:
        raise InputError(f"{root}: no DICOM files found")
    rel = {f: Path(os.path.relpath(f, root)).as_posix() for f in files}
    labelled = _label_csv(root)
    if labelled is not None:
        csv_path, table, cols = labelled
        lookup = _csv_lookup(table, cols)
        rows = []
        for f in files:
            try:
                fields = dicom_fields(f)
            except InputError as exc:
                log.add(str(exc))
                continue
            record = _csv_record(lookup, fields, rel[f])
            if record is None:
                log.add(f"{f}: not listed in {csv_path.name} (by SOP Instance UID or file name)")
                continue
            raw_split = record[cols["split"]].strip() if cols["split"] else ""
            patient = record[cols["patient"]].strip() if cols["patient"] else ""
            rows.append((f, rel[f], record[cols["label"]].strip(), split_name(raw_split) if raw_split else None,
                         patient or None))
        if task_obj is None:
            task_obj = custom_task(csv_path.stem, {r[2] for r in rows if r[2]})
        return rows, task_obj
    folders = class_folders(root)
    if not folders:
        raise InputError(f"{root}: DICOM files without labels; put them in class folders (CLASS/file.dcm, "
                         "optionally under train/val/test) or add a CSV with a label column and a "
                         "sop_instance_uid or file name column")
    if task_obj is None:
        detected = detect_folder_task(folders)
        task_obj = get_task(detected) if detected == "oct-kermany" else custom_task(root.name, {f.name for f in folders})
    rows = []
    inside = set()
    for folder in folders:
        for f in dicom_files(folder.path):
            rows.append((f, rel[f], folder.name, folder.split, None))
            inside.add(f)
    for f in sorted(set(files) - inside):
        log.add(f"{f}: DICOM file outside any class folder; its label is unknown")
    return rows, task_obj


def read_dicom(root: Path, task: Task | str | None, *, skip_bad: bool, max_pixels: int, source: str,
               dicom: DicomOptions | None = None) -> Dataset:
    """Read a DICOM tree; each file is checked (header, pixel limit, pixel bytes present) without decoding."""
    root = Path(root).resolve()
    log = ProblemLog(source, skip_bad)
    rows, task_obj = _labelled_files(root, get_task(task) if task is not None else None, log)
    options = dicom or DicomOptions()
    table_rows = []
    for full, rel, raw_label, split, csv_patient in rows:
        try:
            label = task_obj.canonical_label(raw_label)
            check_dicom(full, max_pixels, options)
            fields = dicom_fields(full)
        except InputError as exc:
            log.add(f"{full}: {exc}" if not str(exc).startswith(full) else str(exc))
            continue
        table_rows.append((rel, full, label, fields["patient_id"] or csv_patient, split,
                           *header_subgroups(fields["characteristics"]).values()))
    names = [subgroup_column_name(name, task_obj) for name in HEADER_SUBGROUPS]
    table = pd.DataFrame(table_rows, columns=["image_id", "path", "label", "patient_id", "split", *names])
    table = table.drop(columns=[name for name in names if table[name].isna().all()])
    ds = finish(table, task_obj, source, log, str(root), max_pixels, check=False)
    ds.dicom = dicom
    return ds


def single_file_error(path: Path) -> InputError:
    return InputError(f"{path}: a single DICOM image carries no label; give the folder (class folders of DICOM "
                      "files, or DICOM files with a CSV of labels) or a zip of it")


def _read(path: Path, task: Task | str | None, options) -> Dataset:
    return read_dicom(path, task, skip_bad=options.skip_bad, max_pixels=options.max_pixels, source=options.source,
                      dicom=options.dicom)


def _dicom_tree(scan) -> Path | None:
    return scan.root if is_dicom_tree(scan.root) else None


# -- writing: the format's example (tests build their special files on dicom_image too) -------------------------
def dicom_image(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                sop_uid: str | None = None):
    """A minimal valid DICOM image (pydicom Dataset) of `pixels`: (H, W), (frames, H, W), or (H, W, 3) when
    `photometric` is a colour one; unsigned or signed integers, `bits_stored` of them used (default: all). A Secondary
    Capture instance with its image pixel module, uncompressed (explicit VR little endian) Part 10 file meta and a
    new SOP Instance UID unless given; callers add header attributes and save it with save_dicom."""
    from pydicom.dataset import Dataset as DicomDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(pixels)
    colour = photometric in ("RGB", "YBR_FULL_422")
    ds = DicomDataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    if pixels.ndim == 3 and not colour:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def save_dicom(ds, path: str | Path) -> Path:
    """Save a pydicom Dataset as a DICOM Part 10 file (128-byte preamble, DICM, file meta); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.preamble = b"\x00" * 128
    ds.save_as(path, enforce_file_format=True)
    return path


def write_example(folder: Path, task: Task) -> None:
    """The format's tiny example: folder/CLASS/CLASS-i.dcm, 12-bit grey images, one patient each."""
    for label, i, pixels in example_pixels(task):
        ds = dicom_image(pixels.astype(np.uint16) << 4, bits_stored=12)
        ds.PatientID = f"{label}-{i}"
        save_dicom(ds, folder / label / f"{label}-{i}.dcm")


# Before every other folder detector: a tree of DICOM files is DICOM whatever its folders are named.
FORMAT = DatasetFormat(name="dicom", file_description="", folder_description="DICOM files (class folders, or with a "
                       "CSV of labels by SOP Instance UID or file name)", read=_read,
                       detectors=((-10, _dicom_tree),), uploadable=False, example=write_example)
