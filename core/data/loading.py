"""load_dataset: the one entry point from a folder, CSV, .npz or zip of these to a Dataset."""

from __future__ import annotations

from pathlib import Path

from core.data.archive import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_TOTAL_BYTES, extract_zip
from core.data.dataset import Dataset
from core.data.dicom import DicomOptions
from core.data.images import DEFAULT_MAX_PIXELS
from core.data.readers import read_path
from core.data.tasks import Task
from core.errors import InputError


def load_dataset(path_or_zip: str | Path, task: Task | str | None = None, *, skip_bad: bool = False,
                 extract_to: str | Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_archive_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 max_archive_entries: int = DEFAULT_MAX_ENTRIES, dicom: DicomOptions | None = None) -> Dataset:
    """Read any supported dataset and return one table-backed Dataset.

    Supported: Kermany OCT2017 and chest X-ray folders, any ImageFolder (optionally under
    train/val/test), a CSV manifest, a MedMNIST .npz, DICOM folders, or a zip of any of these (extracted safely to
    `extract_to`, by default the workspace uploads folder, and reused when loaded again).
    task: a preset name, a task file, a Task, or None to infer it from the layout.
    skip_bad: skip unreadable images and unusable rows, recording them in `ds.problems`; by default
    the first load with such problems raises InputError listing them.
    dicom: how DICOM images are windowed (core.data.dicom.DicomOptions; None: the file's own window).
    """
    path = Path(path_or_zip).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".zip":
        root = extract_zip(path, extract_to, max_total_bytes=max_archive_bytes, max_entries=max_archive_entries)
        # Paths inside an upload must stay inside it (a CSV may not point at other files on this machine).
        return read_path(root, task, skip_bad=skip_bad, max_pixels=max_pixels, source=str(path.resolve()),
                         confined=True, dicom=dicom)
    return read_path(path, task, skip_bad=skip_bad, max_pixels=max_pixels, dicom=dicom)
