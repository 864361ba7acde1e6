"""Class-folder readers: ImageFolder (optionally under train/val/test), Kermany OCT2017 and chest X-ray."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.data.dataset import Dataset
from core.data.images import is_image_name
from core.data.readers.common import ProblemLog, custom_task, finish, split_name
from core.data.readers.registry import DatasetFormat, write_example_images
from core.data.tasks import Task, get_task
from core.errors import InputError

# OCT2017 names its files CLASS-PATIENT-N.jpeg; the patient number is shared across classes.
_CLASS_PATIENT_N = re.compile(r"^(?P<cls>[^-]+)-(?P<patient>[^-]+)-(?P<n>\d+)$")
# Chest X-ray: person1_bacteria_1.jpeg / person1_virus_6.jpeg; NORMAL: IM-0115-0001 or NORMAL2-IM-1427-0001.
_CXR_PERSON = re.compile(r"(person\d+)", re.IGNORECASE)
_CXR_KIND = re.compile(r"(bacteria|virus)", re.IGNORECASE)
_CXR_NORMAL = re.compile(r"IM-(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class ClassFolder:
    split: str | None
    name: str
    path: Path


def visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise InputError(f"{folder}: cannot list folder ({exc.strerror})") from None
    return sorted((Path(e.path) for e in entries
                   if e.is_dir() and not e.name.startswith((".", "__MACOSX"))), key=lambda p: p.name)


def _has_split_folders(folder: Path) -> bool:
    return any(split_name(d.name) for d in visible_dirs(folder))


def class_folders(root: Path) -> list[ClassFolder]:
    """The class folders of an ImageFolder tree: root/CLASS or root/SPLIT/CLASS (train/val/test)."""
    top = visible_dirs(root)
    splits = {d: split_name(d.name) for d in top}
    if not any(splits.values()):
        nested = [d.name for d in top if _has_split_folders(d)]
        if nested:
            # e.g. Mendeley's CellData/{OCT,chest_xray}/train/...: two datasets, not two classes.
            raise InputError(f"{root}: {', '.join(nested)} hold train/test folders of their own, so they are "
                             "datasets, not class folders; load one of them")
        return [ClassFolder(None, d.name, d) for d in top]
    # Kaggle's chest_xray zip repeats the whole dataset in chest_xray/chest_xray/: next to real split
    # folders, a folder that itself holds split folders is such a copy and is left out.
    splits = {d: s for d, s in splits.items() if s is not None or not _has_split_folders(d)}
    others = [d.name for d, s in splits.items() if s is None]
    if others:
        raise InputError(f"{root}: mixes split folders ({', '.join(d.name for d, s in splits.items() if s)}) "
                         f"with other folders ({', '.join(others)}); put every class folder under a split")
    seen: dict[str, str] = {}
    out = []
    for d, s in splits.items():
        if s in seen:
            raise InputError(f"{root}: folders {seen[s]!r} and {d.name!r} both name the {s} split")
        seen[s] = d.name
        out += [ClassFolder(s, c.name, c) for c in visible_dirs(d)]
    return out


def image_files(folder: Path, root: Path) -> list[tuple[str, str]]:
    """(absolute path, posix path relative to root) of every image under folder, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__MACOSX")))
        # One relpath per folder, not per file: OCT2017 has 84k files in a handful of folders.
        rel_dir = Path(os.path.relpath(dirpath, root)).as_posix()
        for name in sorted(filenames):
            if is_image_name(name):
                found.append((os.path.join(dirpath, name), f"{rel_dir}/{name}"))
    return found


def looks_like_image_folder(root: Path) -> bool:
    try:
        folders = class_folders(root)
    except InputError:
        return False
    return any(image_files(f.path, root)[:1] for f in folders)


def _labels_of(task: Task, names: set[str]) -> set[str] | None:
    """The task's classes the folder names stand for (aliases included); None if a name is not one of them."""
    try:
        return {task.canonical_label(n) for n in names}
    except InputError:
        return None


def detect_folder_task(folders: list[ClassFolder]) -> str | None:
    """oct-kermany or cxr-kermany when the class folder names are those of Kermany's datasets (or a common
    re-export's: NORMAL / PNEUMONIA_BACTERIAL / PNEUMONIA_VIRAL)."""
    names = {f.name.upper() for f in folders}
    if "PNEUMONIA" in names and names <= {"NORMAL", "PNEUMONIA"}:
        return "cxr-kermany"
    cxr = get_task("cxr-kermany")
    labels = _labels_of(cxr, names)
    if len(names) >= 2 and labels is not None and labels - {"NORMAL"}:
        return "cxr-kermany"
    oct_task = get_task("oct-kermany")
    if len(names) >= 2 and names <= {c.upper() for c in oct_task.classes}:
        return "oct-kermany"
    return None


def _class_patient(stem: str, folder_name: str) -> str | None:
    m = _CLASS_PATIENT_N.match(stem)
    return m["patient"] if m and m["cls"].lower() == folder_name.lower() else None


def _cxr_row(stem: str, folder_name: str, task: Task) -> tuple[str, str | None]:
    """(label, patient_id) for a Kermany chest X-ray file; InputError when pneumonia type is not named."""
    if folder_name.upper() == "PNEUMONIA":
        kind = _CXR_KIND.search(stem)
        if kind is None:
            raise InputError("pneumonia image whose name says neither 'bacteria' nor 'virus' "
                             "(expected e.g. person1_bacteria_1.jpeg)")
        return task.canonical_label(kind[1].lower()), _cxr_patient(stem)
    return task.canonical_label(folder_name), _cxr_patient(stem)


def _cxr_patient(stem: str) -> str | None:
    """The child a Kermany chest X-ray file name names: person12 for pneumonia, IM-0115 for normal images
    (NORMAL2-IM-1427 and IM-1427 share one id: if they are one child, a split must not separate them)."""
    person = _CXR_PERSON.search(stem)
    if person:
        return person[1].lower()
    normal = _CXR_NORMAL.search(stem)
    return f"IM-{normal[1]}" if normal else None


def read_image_folder(root: Path, task: Task | str | None, *, skip_bad: bool, max_pixels: int,
                      source: str) -> Dataset:
    """Read root/CLASS/* or root/SPLIT/CLASS/*; Kermany OCT/CXR naming gives patient ids and labels."""
    folders = class_folders(root)
    if not folders:
        raise InputError(f"{root}: no class folders found (expected {root.name}/CLASS/image files, "
                         "optionally under train/val/test)")
    detected = detect_folder_task(folders)
    task_obj = get_task(task) if task is not None else (get_task(detected) if detected else None)
    # Kermany's PNEUMONIA folder holds two classes told apart by file name, unless the task has PNEUMONIA itself.
    cxr_naming = (any(f.name.upper() == "PNEUMONIA" for f in folders) and task_obj is not None
                  and "PNEUMONIA" not in {c.upper() for c in task_obj.classes})
    if task_obj is None:
        task_obj = custom_task(root.name, {f.name for f in folders})
    listed_files = {folder.path: image_files(folder.path, root) for folder in folders}
    if not cxr_naming:
        refused = []
        for folder in folders:
            if not listed_files[folder.path]:
                continue  # noted below as an empty class folder
            try:
                task_obj.canonical_label(folder.name)
            except InputError:
                refused.append(f"{folder.split}/{folder.name}" if folder.split else folder.name)
        if refused:
            listed = ", ".join(f"'{r}'" for r in sorted(set(refused)))
            plural = "s" if len(set(refused)) > 1 else ""
            raise InputError(f"{root}: class folder{plural} {listed}: unknown label{plural} for task "
                             f"{task_obj.name!r} (its classes: {', '.join(task_obj.classes)}"
                             f"{'; also accepted: ' + ', '.join(k for k, _ in task_obj.aliases) if task_obj.aliases else ''})")
    # Kermany's chest X-ray file names carry the child (person12_..., IM-0115-...) under any class-folder naming.
    cxr_files = detected == "cxr-kermany" or task_obj.name == "cxr-kermany"
    log = ProblemLog(source, skip_bad)
    rows = []
    for folder in folders:
        files = listed_files[folder.path]
        where = f"{folder.split}/{folder.name}" if folder.split else folder.name
        if not files:
            log.add(f"{folder.path}: empty class folder '{where}' (no .jpeg/.png/.tif/.bmp images)")
            continue
        if not cxr_naming:
            try:
                label = task_obj.canonical_label(folder.name)
            except InputError as exc:
                raise InputError(f"{folder.path}: class folder '{where}': {exc}") from None
        for full, rel in files:
            stem = os.path.splitext(os.path.basename(full))[0]
            if cxr_naming:
                try:
                    label, patient = _cxr_row(stem, folder.name, task_obj)
                except InputError as exc:
                    log.add(f"{full}: {exc}")
                    continue
            elif cxr_files:
                patient = _cxr_patient(stem)
            else:
                patient = _class_patient(stem, folder.name)
            rows.append((rel, full, label, patient, folder.split))
    table = pd.DataFrame(rows, columns=["image_id", "path", "label", "patient_id", "split"])
    return finish(table, task_obj, source, log, str(root), max_pixels)


# -- the format ---------------------------------------------------------------------------------------------
def scan_class_folders(scan) -> list[ClassFolder]:
    """The folder's class folders, listed once per scan; a layout error is noted (it explains a failed detection)."""
    if "class_folders" not in scan.memo:
        try:
            scan.memo["class_folders"] = class_folders(scan.root)
        except InputError as exc:
            scan.problems.append(exc)
            scan.memo["class_folders"] = []
    return scan.memo["class_folders"]


def _kermany_layout(scan) -> Path | None:
    """Class folders named as in Kermany's OCT2017 or chest X-ray datasets: a sure sign, checked first."""
    folders = scan_class_folders(scan)
    return scan.root if folders and detect_folder_task(folders) else None


def _any_image_folder(scan) -> Path | None:
    """Any class folders holding images (after a CSV manifest, which may sit beside image folders)."""
    return scan.root if scan_class_folders(scan) and looks_like_image_folder(scan.root) else None


def _read(path: Path, task, options) -> Dataset:
    return read_image_folder(path, task, skip_bad=options.skip_bad, max_pixels=options.max_pixels,
                             source=options.source)


def write_example(folder: Path, task: Task) -> None:
    """The format's tiny example: folder/CLASS/CLASS-i.png."""
    write_example_images(folder, task, lambda label, i: f"{label}/{label}-{i}.png")


FORMAT = DatasetFormat(
    name="image-folder", file_description="", folder_description="class folders (CLASS/images, optionally under "
    "train/val/test)", read=_read, detectors=((0, _kermany_layout), (20, _any_image_folder)), uploadable=False,
    example=write_example)
