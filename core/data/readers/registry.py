"""The dataset format registry: each reader module declares its format (FORMAT = DatasetFormat(...)) and is found
here, so adding a format is one new file in core/data/readers/.

A format says which single files it reads (by suffix), how to recognise itself in a folder (detectors with a
priority: lower runs first), how to describe itself in messages, whether a file of it may be uploaded alone, and how
to write a tiny example of itself (what tests/test_registry_contracts.py reads back for every format).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from core.data.dataset import Dataset
from core.data.tasks import Task
from core.errors import InputError


@dataclass(frozen=True)
class ReadOptions:
    """How to read: skip bad rows/images (recorded in ds.problems), pixel bound, the source to record, and whether
    paths inside the data must stay inside it (uploads), and how DICOM pixels are windowed."""

    skip_bad: bool
    max_pixels: int
    source: str
    confined: bool = False
    dicom: object | None = None  # core.data.dicom.DicomOptions: windowing and multi-frame choice for DICOM files


def visible_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(folders, files) directly inside `folder`, sorted, without hidden entries and macOS zip debris."""
    dirs, files = [], []
    for entry in os.scandir(folder):
        if entry.name.startswith((".", "__MACOSX")):
            continue
        (dirs if entry.is_dir() else files).append(Path(entry.path))
    return sorted(dirs), sorted(files)


@dataclass
class FolderScan:
    """A dataset folder as the detectors see it. A detector that finds a near miss (e.g. several .npz files) notes
    why in `problems`; if no format claims the folder, the first noted problem is the error."""

    root: Path
    dirs: list[Path]
    files: list[Path]
    problems: list[InputError] = field(default_factory=list)
    memo: dict = field(default_factory=dict)  # results detectors share (e.g. the class folders, listed once)

    def files_with_suffix(self, suffix: str) -> list[Path]:
        return [f for f in self.files if f.suffix.lower() == suffix]


Detector = Callable[[FolderScan], "Path | None"]


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format. read(path, task, options) -> Dataset reads a file of `suffixes` or the folder/file a
    detector returned."""

    name: str
    file_description: str    # in "give a folder, <these>, or a .zip of one of these"
    folder_description: str  # in "no dataset found; expected <these>"
    read: Callable[[Path, Task | str | None, ReadOptions], Dataset]
    suffixes: tuple[str, ...] = ()
    detectors: tuple[tuple[int, Detector], ...] = ()
    uploadable: bool = True  # a file of this format may be uploaded on its own
    alone_hint: str = ""     # said when such a file, uploaded alone, cannot be read
    # example(folder, task) writes a tiny valid dataset of this format into `folder`: example_pixels(task), one
    # label per image, so that reading `folder` (or a zip of it) gives those images and labels back.
    example: Callable[[Path, Task], None] | None = None


# A format's example: this many images per class, this many pixels a side.
EXAMPLE_PER_CLASS = 3
EXAMPLE_SIDE = 32


def example_pixels(task: Task) -> list[tuple[str, int, np.ndarray]]:
    """(label, index, grey uint8 pixels) of each image of a format's example: EXAMPLE_PER_CLASS random images of each
    of the task's classes, EXAMPLE_SIDE pixels a side, the same on every call."""
    rng = np.random.default_rng(0)
    return [(label, i, rng.integers(0, 256, (EXAMPLE_SIDE, EXAMPLE_SIDE), dtype=np.uint8))
            for label in task.classes for i in range(EXAMPLE_PER_CLASS)]


def write_example_images(folder: Path, task: Task, name: Callable[[str, int], str]) -> list[tuple[str, str]]:
    """example_pixels(task) saved as PNG files at folder/name(label, index); (relative path, label) of each."""
    written = []
    for label, i, pixels in example_pixels(task):
        relative = name(label, i)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / relative)
        written.append((relative, label))
    return written


@lru_cache(maxsize=1)
def formats() -> tuple[DatasetFormat, ...]:
    """Every format declared by a module of core.data.readers, in module-name order. The modules are found on the
    package's path (Python loads a package before its modules, so it is there); nothing its __init__ defines is used."""
    package = sys.modules[__package__]
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if isinstance(getattr(module, "FORMAT", None), DatasetFormat):
            found.append(module.FORMAT)
    return tuple(found)


def format_for_file(path: Path) -> DatasetFormat | None:
    suffix = path.suffix.lower()
    return next((f for f in formats() if suffix in f.suffixes), None)


def data_suffixes() -> tuple[str, ...]:
    """Every suffix a format reads ('.csv', '.npz' ...): besides images, the files a zip upload keeps."""
    return tuple(dict.fromkeys(s for f in formats() for s in f.suffixes))


def upload_types() -> tuple[str, ...]:
    """File types a user may upload: a zip of any dataset, and each single-file format that may come alone."""
    return ("zip", *(s.lstrip(".") for f in formats() if f.uploadable for s in f.suffixes))


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def file_types_text() -> str:
    """'a .csv manifest, a MedMNIST .npz' ...: the single-file formats, for messages."""
    return ", ".join(f.file_description for f in formats() if f.suffixes)


def data_argument_help(*more: str) -> str:
    """'dataset folder, a .csv manifest, a MedMNIST .npz or a .zip of one of these' (then `more`, e.g. 'a dataset
    id'): the one phrasing of what a command line's data argument takes."""
    described = [f.file_description for f in formats() if f.suffixes]
    return _joined(["dataset folder", *described, "a .zip of one of these", *more])


def detect(root: Path) -> tuple[DatasetFormat, Path]:
    """The format that claims this folder (detectors by priority) and what to read; InputError saying why not."""
    dirs, files = visible_entries(root)
    scan = FolderScan(root, dirs, files)
    detectors = sorted(((priority, i, fmt, detector) for i, fmt in enumerate(formats())
                        for priority, detector in fmt.detectors), key=lambda t: (t[0], t[1]))
    for _, _, fmt, detector in detectors:
        target = detector(scan)
        if target is not None:
            return fmt, target
    if scan.problems:
        raise scan.problems[0]
    expected = _joined([f.folder_description for f in formats() if f.detectors])
    raise InputError(f"{root}: no dataset found; expected {expected}")
