"""Reading a dataset file or folder: the format registry (core.data.readers.registry) picks the reader."""

from __future__ import annotations

from pathlib import Path

from core.data.dataset import Dataset
from core.data.dicom import DicomOptions, is_dicom
from core.data.images import DEFAULT_MAX_PIXELS, is_image_name
from core.data.readers.common import split_name
from core.data.readers.registry import (DatasetFormat, ReadOptions, data_suffixes, detect, file_types_text,
                                       format_for_file, formats, upload_types, visible_entries)
from core.data.readers.medmnist import PNEUMONIA_BINARY
from core.data.tasks import Task
from core.errors import InputError

__all__ = ["read_path", "dataset_root", "PNEUMONIA_BINARY", "DatasetFormat", "formats", "upload_types"]


def dataset_root(folder: Path) -> Path:
    """Step through wrapper folders (a zip of 'OCT2017/' or 'chest_xray/chest_xray/') to the data itself.

    Stops at a split folder (train/test would lose their meaning) and at a folder holding files.
    """
    folder = folder.resolve()
    suffixes = data_suffixes()
    while True:
        dirs, files = visible_entries(folder)
        data_files = [f for f in files if is_image_name(f.name) or f.suffix.lower() in suffixes]
        if len(dirs) != 1 or data_files or split_name(dirs[0].name):
            return folder
        inner_dirs, _ = visible_entries(dirs[0])
        if not inner_dirs:
            return folder  # root/CLASS/images: the single folder is a class, not a wrapper
        folder = dirs[0]


def read_path(path: Path, task: Task | str | None = None, *, skip_bad: bool = False,
              max_pixels: int = DEFAULT_MAX_PIXELS, source: str | None = None, confined: bool = False,
              dicom: DicomOptions | None = None) -> Dataset:
    """Read a dataset file or folder (not a zip: load_dataset extracts those first); `dicom`: DICOM windowing."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    options = ReadOptions(skip_bad, max_pixels, source or str(path.resolve()), confined, dicom)
    if path.is_file():
        fmt = format_for_file(path)
        if fmt is None and is_dicom(path):
            from core.data.readers.dicom import single_file_error

            raise single_file_error(path)
        if fmt is None:
            raise InputError(f"{path}: unsupported file type {path.suffix.lower() or '(none)'}; give a folder, "
                             f"{file_types_text()} or a .zip of one of these")
        return fmt.read(path, task, options)
    fmt, target = detect(dataset_root(path))
    return fmt.read(target, task, options)
