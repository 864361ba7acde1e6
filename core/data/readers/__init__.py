"""Format detection: which reader a folder or file needs (class folders, CSV manifest, MedMNIST .npz)."""

from __future__ import annotations

import os
from pathlib import Path

from core.data.dataset import Dataset
from core.data.images import DEFAULT_MAX_PIXELS, is_image_name
from core.data.readers.common import split_name
from core.data.readers.folders import class_folders, detect_folder_task, looks_like_image_folder, read_image_folder
from core.data.readers.manifest import is_manifest, manifest_problem, read_manifest
from core.data.readers.medmnist import PNEUMONIA_BINARY, read_medmnist
from core.data.tasks import Task
from core.errors import InputError

__all__ = ["read_path", "dataset_root", "PNEUMONIA_BINARY"]


def _visible(folder: Path) -> tuple[list[Path], list[Path]]:
    dirs, files = [], []
    for entry in os.scandir(folder):
        if entry.name.startswith((".", "__MACOSX")):
            continue
        (dirs if entry.is_dir() else files).append(Path(entry.path))
    return sorted(dirs), sorted(files)


def dataset_root(folder: Path) -> Path:
    """Step through wrapper folders (a zip of 'OCT2017/' or 'chest_xray/chest_xray/') to the data itself.

    Stops at a split folder (train/test would lose their meaning) and at a folder holding files.
    """
    folder = folder.resolve()
    while True:
        dirs, files = _visible(folder)
        data_files = [f for f in files if is_image_name(f.name) or f.suffix.lower() in (".csv", ".npz")]
        if len(dirs) != 1 or data_files or split_name(dirs[0].name):
            return folder
        inner_dirs, _ = _visible(dirs[0])
        if not inner_dirs:
            return folder  # root/CLASS/images: the single folder is a class, not a wrapper
        folder = dirs[0]


def read_path(path: Path, task: Task | str | None = None, *, skip_bad: bool = False,
              max_pixels: int = DEFAULT_MAX_PIXELS, source: str | None = None, confined: bool = False) -> Dataset:
    """Read a dataset file or folder (not a zip: load_dataset extracts those first)."""
    path = Path(path).expanduser()
    source = source or str(path.resolve())
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return read_manifest(path, task, skip_bad=skip_bad, max_pixels=max_pixels, source=source,
                                 confined=confined)
        if suffix == ".npz":
            return read_medmnist(path, task, skip_bad=skip_bad, max_pixels=max_pixels, source=source)
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'}; give a folder, a .csv manifest, "
                         "a MedMNIST .npz or a .zip of one of these")
    root = dataset_root(path)
    kwargs = dict(skip_bad=skip_bad, max_pixels=max_pixels, source=source)
    folder_error = None
    try:
        folders = class_folders(root)
    except InputError as exc:
        folder_error, folders = exc, []
    if folders and detect_folder_task(folders):
        return read_image_folder(root, task, **kwargs)
    _, files = _visible(root)
    manifests = [f for f in files if f.suffix.lower() == ".csv" and is_manifest(f)]
    if len(manifests) > 1:
        raise InputError(f"{root}: several CSV manifests ({', '.join(f.name for f in manifests)}); "
                         "give the path of the one to use")
    if manifests:
        return read_manifest(manifests[0], task, confined=confined, **kwargs)
    csvs = [f for f in files if f.suffix.lower() == ".csv"]
    if csvs and len({f.name for f in folders}) < 2:
        # Images in one folder beside a CSV: the CSV was meant as the manifest; say what it lacks rather
        # than reading the image folder as the only class.
        raise InputError(f"{root}: found no usable CSV manifest: " + "; ".join(manifest_problem(f) for f in csvs))
    npz = [f for f in files if f.suffix.lower() == ".npz"]
    if folders and looks_like_image_folder(root):
        return read_image_folder(root, task, **kwargs)
    if len(npz) == 1:
        return read_medmnist(npz[0], task, **kwargs)
    if folder_error is not None:
        raise folder_error
    if len(npz) > 1:
        raise InputError(f"{root}: several .npz files ({', '.join(f.name for f in npz)}); give the one to use")
    raise InputError(f"{root}: no dataset found; expected class folders (CLASS/images, optionally under "
                     "train/val/test), a CSV manifest, or a MedMNIST .npz")
