"""Shared reader helpers: split names, natural class order, custom tasks, image checks, problem reports, and where
the files a dataset's own text names may be (PathGuard)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from core.data.dataset import Dataset
from core.data.images import check_image
from core.data.tasks import MAX_CLASSES, Task
from core.errors import SKIP_BAD_HINT, InputError
from core.store.access import DATA_ROOTS_ENV, server_data_roots

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
_SHOWN_PROBLEMS = 5
# core.data.archive writes it into every folder it extracts a zip to (it holds the zip's sha256; hidden, so readers
# skip it); defined here, where the readers' confinement rule reads it, so the archive may depend on the readers.
EXTRACTED_MARKER = ".core-extracted"


def split_name(raw: object) -> str | None:
    """'Training', 'valid', 'TEST' ... -> train/val/test; None when the text names no split."""
    return SPLIT_ALIASES.get(str(raw).strip().lower())


def natural_key(text: str) -> list:
    """Sort key so that '2' < '10' and 'class2' < 'class10'."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(text))]


def custom_task(source_name: str, classes: Iterable[str], kind: str = "multiclass",
                keep_order: bool = False) -> Task:
    """A task for labels the presets do not know, named after the folder or file they came from.

    Classes are put in natural order ('2' before '10') unless keep_order (multi-label CSV columns).
    """
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", source_name).strip("-").lower() or "dataset"
    names = list(dict.fromkeys(str(c) for c in classes))
    if len(names) > MAX_CLASSES:
        raise InputError(f"{source_name}: {len(names):,} distinct labels, above the limit of {MAX_CLASSES} classes; "
                         "is the label column an id or a measurement?")
    ordered = tuple(names if keep_order else sorted(names, key=natural_key))
    if len(ordered) < 2 and kind != "multilabel":
        raise InputError(f"{source_name}: found only the class {list(ordered)}; a classifier needs at least two")
    return Task(name=f"custom-{slug}", title=f"Custom task ({source_name})", modality="other", kind=kind,
                classes=ordered, description=f"Labels as found in {source_name}.")


def extracted_upload(folder: Path) -> Path | None:
    """The folder a zip was extracted to (it holds EXTRACTED_MARKER) that `folder` is in, if any."""
    for candidate in (folder, *folder.parents):
        if (candidate / EXTRACTED_MARKER).is_file():
            return candidate
    return None


class PathGuard:
    """Where the files a dataset's own text names (a manifest's rows) may be: inside the folder that text came from,
    or under a data root of this server, every symbolic link followed to where it points. An upload's data
    (`confined`, or any folder extracted from a zip, wherever it is read from again) stays inside its own folder.
    The decision is made on the path alone, before anything is looked up: a refusal never tells whether a file
    exists."""

    def __init__(self, base: Path, confined: bool):
        self.base = Path(os.path.realpath(base))
        self.upload = bool(confined) or extracted_upload(self.base) is not None
        self.roots = [self.base] + ([] if self.upload else server_data_roots())

    @property
    def where(self) -> str:
        return "the dataset folder" if self.upload else "the dataset folder and the data roots"

    @property
    def rule(self) -> str:
        if self.upload:
            return "a manifest in an upload may name only files inside the upload's own folder"
        return (f"a manifest may name only files inside its own folder or under a data root of this server "
                f"(${DATA_ROOTS_ENV}); a symbolic link counts where it points")

    def resolve(self, path: str | Path) -> Path | None:
        """Where `path` leads (every symbolic link followed), or None when that is not inside an allowed folder."""
        try:
            resolved = Path(os.path.realpath(path))
        except (OSError, ValueError):  # not a path this system can name (a NUL byte ...): nowhere allowed
            return None
        return resolved if any(resolved.is_relative_to(root) for root in self.roots) else None


class ProblemLog:
    """Row-level problems (bad images, unusable rows): skipped and recorded with skip_bad, else one InputError."""

    def __init__(self, source: str, skip_bad: bool):
        self.source, self.skip_bad, self.items = source, skip_bad, []

    def add(self, message: str) -> None:
        self.items.append(message)

    def settle(self) -> list[str]:
        """Raise when problems were found and the user did not ask to skip them; else return them."""
        if self.items and not self.skip_bad:
            shown = "; ".join(self.items[:_SHOWN_PROBLEMS])
            more = f" (and {len(self.items) - _SHOWN_PROBLEMS} more)" if len(self.items) > _SHOWN_PROBLEMS else ""
            raise InputError(f"{self.source}: {len(self.items)} problem(s): {shown}{more}. "
                             f"{SKIP_BAD_HINT}.")
        return list(self.items)


def check_images(table: pd.DataFrame, log: ProblemLog, max_pixels: int) -> pd.DataFrame:
    """Header-check every image (cheap, no decode); rows whose image fails are logged and dropped."""
    keep = []
    for path in table["path"]:
        try:
            check_image(path, max_pixels)
            keep.append(True)
        except InputError as exc:
            log.add(str(exc))
            keep.append(False)
    return table.loc[keep]


def finish(table: pd.DataFrame, task: Task, source: str, log: ProblemLog, root: str | None,
           max_pixels: int, check: bool = True) -> Dataset:
    """Check images, settle problems, and build the Dataset (never an empty one)."""
    if check:
        table = check_images(table, log, max_pixels)
    problems = log.settle()
    if table.empty:
        raise InputError(f"{source}: no usable images" + (f" ({len(problems)} skipped)" if problems else ""))
    return Dataset(table, task, source=source, problems=problems, root=root, max_pixels=max_pixels)
