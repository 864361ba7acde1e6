"""The Dataset: one table row per image (image_id, path, label, patient_id, split) plus its Task."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from core.data.dicom import DicomOptions
from core.data.fingerprint import dataset_fingerprint
from core.data.images import DEFAULT_MAX_PIXELS, open_image
from core.data.shown import dataset_folder, within_folder
from core.data.tasks import Task, get_task
from core.errors import InputError

BASE_COLUMNS = ("image_id", "path", "label", "patient_id", "split")
SPLITS = ("train", "val", "test")
UNSPLIT = "unsplit"  # how class_counts() names rows without a split
# A source's own column whose name is taken by the contract (an `image_id` column beside a `path` column) is kept
# under its name plus this suffix.
TAKEN_SUFFIX = " (source)"


def reserved_columns(task: Task) -> set[str]:
    """Column names the table contract owns for this task (compared case-insensitively by subgroup_column_name)."""
    return {*BASE_COLUMNS, *(task.classes if task.kind == "multilabel" else ())}


def subgroup_column_name(name: str, task: Task) -> str:
    """The table name of a source's extra column: its own name, or with TAKEN_SUFFIX when the contract owns it."""
    text = str(name).strip()
    taken = {c.lower() for c in reserved_columns(task)}
    return f"{text}{TAKEN_SUFFIX}" if text.lower() in taken else text


class Dataset:
    """A table-backed image dataset.

    `table` columns: image_id (unique str), path (absolute file path or "npz:<file>#<split>:<i>"),
    label (class name; for multilabel tasks the '|'-joined positives, plus one 0/1 column per class),
    patient_id (str or None), split ("train"/"val"/"test" or None). Row positions are the indices
    used by load_image, subset and the splitting helpers.
    """

    def __init__(self, table: pd.DataFrame, task: Task | str, source: str = "",
                 problems: Sequence[str] | None = None, root: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, dicom: DicomOptions | None = None):
        self.task: Task = get_task(task)
        self.table: pd.DataFrame = _validated(table.reset_index(drop=True), self.task, source)
        self.source = str(source)
        self.root = root
        self.problems: list[str] = list(problems or [])
        self.max_pixels = max_pixels
        self.dicom = dicom  # how DICOM rows are windowed (None: the defaults); part of the fingerprint if set
        self._fingerprint: str | None = None
        self._rows_by_id: pd.Index | None = None
        # Set by split_named: the split folder its ids were made relative to. Records written before ids were
        # relative to the split root (predictions, readings: "test/CNV/x.png") still find their image.
        self.split_prefix: str | None = None

    # -- basics ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}, task={self.task.name!r}, images={len(self)}, splits={self.splits()})"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.task.classes

    @property
    def is_multilabel(self) -> bool:
        return self.task.kind == "multilabel"

    @property
    def fingerprint(self) -> str:
        """sha256 of the content (image bytes and labels), computed once, on first use."""
        if self._fingerprint is None:
            self._fingerprint = dataset_fingerprint(self.table["path"], self.table["label"])
            if self.dicom is not None and not self.dicom.is_default:
                # Another windowing gives other pixels, so other features and predictions.
                self._fingerprint = hashlib.sha256(f"{self._fingerprint}\n{self.dicom}".encode()).hexdigest()
        return self._fingerprint

    # -- images and labels -------------------------------------------------------------------------
    def load_image(self, i: int) -> Image.Image:
        """Decode the image at row position i: EXIF-rotated, mode "L" or "RGB". A file that cannot be decoded is
        named from the dataset's folder ("chest/PNEUMONIA/x.png: ..."), not by its server path."""
        try:
            return open_image(self.table["path"].iat[i], max_pixels=self.max_pixels, dicom=self.dicom)
        except InputError as exc:
            raise InputError(self.in_messages(str(exc))) from None

    def in_messages(self, text: str) -> str:
        """`text` with this dataset's folder named by its own name, never by the server path it lives under."""
        return within_folder(text, self.root or (dataset_folder(self.source) if self.source else None))

    def row_of(self, image_id: str) -> int | None:
        """Row position of an image id (None when it is not in this dataset); the index is built once."""
        if self._rows_by_id is None:
            self._rows_by_id = pd.Index(self.table["image_id"].astype(str))
        position = int(self._rows_by_id.get_indexer([str(image_id)])[0])
        if position < 0 and self.split_prefix and str(image_id).startswith(self.split_prefix):
            position = int(self._rows_by_id.get_indexer([str(image_id)[len(self.split_prefix):]])[0])
        return position if position >= 0 else None

    def image_by_id(self, image_id: str) -> Image.Image:
        row = self.row_of(image_id)
        if row is None:
            raise InputError(f"image {image_id!r} is not in this dataset")
        return self.load_image(row)

    def label_indices(self) -> np.ndarray:
        """Class index per row, in task.classes order (single-label tasks only)."""
        if self.is_multilabel:
            raise InputError(f"task {self.task.name!r} is multi-label: use label_matrix(), not label_indices()")
        index = {c: i for i, c in enumerate(self.classes)}
        return self.table["label"].map(index).to_numpy(dtype=np.int64)

    def label_matrix(self) -> np.ndarray:
        """(n, k) float matrix: the 0/1 label columns for multi-label tasks, one-hot otherwise."""
        if self.is_multilabel:
            return self.table[list(self.classes)].to_numpy(dtype=float)
        out = np.zeros((len(self), len(self.classes)))
        out[np.arange(len(self)), self.label_indices()] = 1.0
        return out

    # -- views -------------------------------------------------------------------------------------
    def subset(self, indices) -> "Dataset":
        """A new Dataset of the given row positions (same task, source and problems)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise InputError(self.in_messages(f"{self.source}: row positions out of range for {len(self)} images"))
        part = Dataset(self.table.iloc[idx], self.task, self.source, self.problems, self.root, self.max_pixels,
                       self.dicom)
        part.split_prefix = self.split_prefix
        return part

    def splits(self) -> list[str]:
        present = [s for s in self.table["split"].dropna().unique()]
        return [s for s in SPLITS if s in present] + sorted(s for s in present if s not in SPLITS)

    def split_named(self, name: str) -> "Dataset":
        """The rows whose split is `name` ("train", "val" or "test"), their image ids relative to the split's
        folder: `demo` split test and the folder `demo/test` name an image alike ("CNV/x.png"), so readings
        and predictions move between the CLI and the dashboard however the folder was pointed at."""
        rows = np.flatnonzero((self.table["split"] == name).to_numpy())
        if rows.size == 0:
            raise InputError(self.in_messages(f"{self.source}: no {name!r} split; splits present: "
                                              f"{self.splits() or 'none'}"))
        part = self.subset(rows)
        prefix = f"{name}/"
        ids = part.table["image_id"].astype(str)
        if ids.str.startswith(prefix).all():
            part.table["image_id"] = ids.str.slice(len(prefix))
            part._rows_by_id = None
            part.split_prefix = prefix
        return part

    def class_counts(self) -> pd.DataFrame:
        """Images per class (columns, in task order) and split (rows; 'unsplit' where none is given)."""
        split = self.table["split"].fillna(UNSPLIT)
        order = [s for s in [*SPLITS, UNSPLIT] if s in set(split)] + sorted(set(split) - {*SPLITS, UNSPLIT})
        if self.is_multilabel:
            counts = self.table[list(self.classes)].groupby(split).sum()
        else:
            counts = pd.crosstab(split, self.table["label"])
        counts = counts.reindex(index=order, columns=list(self.classes), fill_value=0).astype(int)
        counts.index.name, counts.columns.name = "split", "class"
        return counts

    def subgroup_columns(self) -> list[str]:
        """The table's columns beyond the contract (a manifest's sex, age, site, view, device...), in table order:
        the subgroups a test set can be analysed by."""
        reserved = reserved_columns(self.task)
        return [str(c) for c in self.table.columns if c not in reserved]

    def patients(self) -> list[str]:
        """The distinct patient ids (empty when the source names none)."""
        return sorted(self.table["patient_id"].dropna().unique().tolist())


def _validated(table: pd.DataFrame, task: Task, source: str) -> pd.DataFrame:
    """Check the table against the contract; the readers build it, so failures here are bugs or bad CSVs."""
    missing = [c for c in BASE_COLUMNS if c not in table.columns]
    if task.kind == "multilabel":
        missing += [c for c in task.classes if c not in table.columns]
    if missing:
        raise InputError(f"{source}: dataset table lacks columns {missing}")
    table = table.copy()
    table["image_id"] = table["image_id"].astype(str)
    dup = table["image_id"].duplicated(keep=False)
    if dup.any():
        first = table.loc[dup, "image_id"].iloc[0]
        raise InputError(f"{source}: image id {first!r} appears {int((table['image_id'] == first).sum())} times")
    # Keep missing patient ids / splits as None (not NaN or "nan") so they compare and serialise cleanly.
    for col in ("patient_id", "split"):
        values = table[col].astype(object)
        table[col] = values.where(values.notna() & (values.astype(str) != ""), None)
    bad_split = set(table["split"].dropna()) - set(SPLITS)
    if bad_split:
        raise InputError(f"{source}: unknown split names {sorted(bad_split)}; use train, val or test")
    if task.kind == "multilabel":
        for c in task.classes:
            col = pd.to_numeric(table[c], errors="coerce")
            if col.isna().any() or not col.isin([0, 1]).all():
                raise InputError(f"{source}: label column {c!r} must hold only 0 or 1")
            table[c] = col.astype(int)
        positives = table[list(task.classes)].to_numpy(dtype=bool)
        names = np.asarray(task.classes, dtype=object)
        table["label"] = ["|".join(names[row]) for row in positives]
    else:
        unknown = set(table["label"].astype(str)) - set(task.classes)
        if unknown:
            raise InputError(f"{source}: unknown labels {sorted(unknown)[:5]} for task {task.name!r}; "
                             f"expected one of {list(task.classes)}")
        table["label"] = table["label"].astype(str)
    extra = list(task.classes) if task.kind == "multilabel" else []
    order = [*BASE_COLUMNS, *extra]
    return table[order + [c for c in table.columns if c not in order]]
