"""Manifests: a table path,label[,patient_id][,split]; APTOS-style id_code,diagnosis; one 0/1 column per label.

The CSV format is one ManifestTable; another tabular format (JSON lines, a spreadsheet) is a module that supplies
its own `read` (file -> table of text) and an example writer (example_manifest's table saved in its format), and
declares FORMAT = manifest_format(..., example=...): the column rules, the row building, the path guard (PathGuard)
and the messages are this module's.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from core.data.dataset import Dataset, subgroup_column_name
from core.data.images import is_image_name
from core.data.readers.common import PathGuard, ProblemLog, custom_task, finish, split_name
from core.data.readers.folders import scan_class_folders
from core.data.readers.registry import DatasetFormat, write_example_images
from core.data.tasks import Task, get_task
from core.errors import SKIP_BAD_HINT, InputError
from core.store.csv_safe import write_csv

# Accepted header names (compared case-insensitively), most specific first.
PATH_COLUMNS = ("path", "image_path", "filepath", "file_path", "image", "filename", "file_name", "file",
                "image_name", "img", "id_code", "image_id", "id")
LABEL_COLUMNS = ("label", "diagnosis", "class", "level", "grade", "target", "category")
PATIENT_COLUMNS = ("patient_id", "patientid", "patient", "subject_id", "subject")
SPLIT_COLUMNS = ("split", "set", "subset", "partition")
GRADE_COLUMNS = {"diagnosis", "level", "grade"}  # 0-4 in these columns means DR grading (APTOS, EyePACS)
_INDEX_DEPTH = 3  # images may sit next to the CSV or in folders up to this deep (train_images/, images/train/)


def _find(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((columns[n] for n in names if n in columns), None)


def read_csv_table(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """All cells as text ('' for blanks); ';' or tab separated files (spreadsheet exports) are read too."""
    options = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig", nrows=nrows)
    try:
        table = pd.read_csv(path, **options)
        if len(table.columns) == 1:
            for sep in (";", "\t"):
                if sep in str(table.columns[0]):
                    table = pd.read_csv(path, sep=sep, **options)
                    break
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the manifest as UTF-8 CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def text_table(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as a manifest table: every cell text ('' for blanks), column names stripped; for readers of formats
    whose cells come typed (JSON numbers, nulls)."""
    table = frame.astype(object).where(frame.notna(), "").astype(str)
    table.columns = [str(c).strip() for c in table.columns]
    return table


@dataclass(frozen=True)
class ManifestTable:
    """How one tabular format reads a file into a manifest table: read(path, nrows) -> every cell text ('' for
    blanks; InputError when unreadable), `kind` names it in messages, `first_line` is the file line of row 0."""

    suffix: str
    kind: str
    read: Callable[[Path, int | None], pd.DataFrame]
    first_line: int = 2  # under a header line


CSV_TABLE = ManifestTable(".csv", "CSV", read_csv_table)


def manifest_columns(table: pd.DataFrame) -> dict[str, str | None]:
    """The path/label/patient/split columns a manifest uses (None where absent)."""
    columns = {c.lower(): c for c in table.columns}
    return {"path": _find(columns, PATH_COLUMNS), "label": _find(columns, LABEL_COLUMNS),
            "patient": _find(columns, PATIENT_COLUMNS), "split": _find(columns, SPLIT_COLUMNS)}


def _binary_columns(table: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Multi-label columns when there is no label column: every numeric column (a stray 2 in one is then
    reported as a bad value on its line instead of the column silently vanishing); text columns are notes."""
    out = []
    for c in table.columns:
        if c in exclude or c.lower() in ("", "unnamed: 0"):
            continue
        values = table[c].str.strip()
        if len(values) and values.str.fullmatch(r"-?\d+(\.\d+)?").all():
            out.append(c)
    return out


def extra_columns(table: pd.DataFrame, used: set[str], task: Task) -> dict[str, str]:
    """The manifest's columns beyond those it reads for the contract (sex, age, site, view, device...): CSV name ->
    table name (core.data.dataset.subgroup_column_name). Unnamed columns (a spreadsheet's index) are left out."""
    out: dict[str, str] = {}
    for column in table.columns:
        if column in used or not str(column).strip() or str(column).lower().startswith("unnamed:"):
            continue
        out[column] = subgroup_column_name(column, task)
    return out


def is_manifest(path: Path, reader: ManifestTable = CSV_TABLE) -> bool:
    """True when the table names an image column and labels (a label column or several 0/1 columns)."""
    try:
        table = reader.read(path, 200)
    except InputError:
        return False
    cols = manifest_columns(table)
    if cols["path"] is None or table.empty:
        return False
    return cols["label"] is not None or len(_binary_columns(table, {v for v in cols.values() if v})) >= 2


def manifest_problem(path: Path, reader: ManifestTable = CSV_TABLE) -> str:
    """Why a table is not usable as a manifest, in words naming the columns it has and those it needs."""
    try:
        table = reader.read(path, 200)
    except InputError as exc:
        return str(exc)
    found = ", ".join(table.columns) or "none"
    if table.empty:
        return f"{path.name} has a header but no rows"
    cols = manifest_columns(table)
    if cols["path"] is None:
        return f"{path.name} has no image column (expected one of {', '.join(PATH_COLUMNS)}; found {found})"
    return (f"{path.name} has no label column (expected one of {', '.join(LABEL_COLUMNS)}, or one 0/1 column per "
            f"label for multi-label data; found {found})")


class OutsidePath(InputError):
    """A manifest row names a file outside the folders its manifest may name (PathGuard)."""

    def __init__(self, value: str, guard: PathGuard):
        self.value = value
        super().__init__(f"image path {value!r} points outside {guard.where}; refused")


class ImageIndex:
    """Finds a manifest's image by relative path, file name, or bare id (APTOS id_code -> id_code.png)."""

    def __init__(self, base: Path):
        self.base = base
        self.keys: dict[str, list[str]] = defaultdict(list)
        base_depth = len(base.parts)
        for dirpath, dirnames, filenames in os.walk(base):
            depth = len(Path(dirpath).parts) - base_depth
            dirnames[:] = [] if depth >= _INDEX_DEPTH else sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if not is_image_name(name):
                    continue
                full = os.path.join(dirpath, name)
                rel = Path(full).relative_to(base).as_posix()
                for key in {rel, os.path.splitext(rel)[0], name, os.path.splitext(name)[0]}:
                    self.keys[key].append(full)

    def find(self, value: str, manifest_stem: str, guard: PathGuard) -> str:
        """Absolute path of the image `value` names; InputError (row-level) when none or several match, and
        OutsidePath when it leads (symbolic links followed) where `guard` does not allow."""
        text = value.replace("\\", "/").strip()
        if not text:
            raise InputError("empty image name")
        if "\x00" in text:
            raise InputError(f"image path {value!r} holds a NUL character")
        direct = Path(text) if os.path.isabs(text) else self.base / text
        resolved = guard.resolve(direct)
        if resolved is None:  # decided on the path alone: whether such a file exists is not revealed
            raise OutsidePath(value, guard)
        if resolved.is_file():
            return str(resolved)
        found = sorted(set(self.keys.get(text, [])))
        if len(found) > 1:
            # train.csv next to train_images/ and test_images/: prefer the folder named like the manifest.
            preferred = [f for f in found if manifest_stem.lower() in Path(f).parent.name.lower()]
            found = preferred if len(preferred) == 1 else found
        if not found:
            raise InputError(f"image {value!r} not found next to the manifest or in its sub-folders")
        if len(found) > 1:
            raise InputError(f"image {value!r} is ambiguous: {found[0]} and {found[1]} both match")
        if guard.resolve(found[0]) is None:  # a symbolic link beside the CSV pointing out of the allowed folders
            raise OutsidePath(value, guard)
        return found[0]


_SHOWN_OUTSIDE = 5


def _refuse_outside(manifest_path: Path, outside: list[tuple[int, str]], guard: PathGuard) -> None:
    """Without skip_bad, rows naming files outside the allowed folders fail the read: the first few named, the rule
    said (before any other problem: this one is about where the manifest reaches, not about a damaged file)."""
    shown = ", ".join(f"line {line} ({value!r})" for line, value in outside[:_SHOWN_OUTSIDE])
    more = f" and {len(outside) - _SHOWN_OUTSIDE} more" if len(outside) > _SHOWN_OUTSIDE else ""
    raise InputError(f"{manifest_path}: {len(outside)} row(s) name an image path that points outside {guard.where}: "
                     f"{shown}{more}. Refused: {guard.rule}. {SKIP_BAD_HINT}.")


def _normalise_label(raw: str) -> str:
    text = raw.strip()
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


def _infer_task(table: pd.DataFrame, cols: dict, binary_cols: list[str], manifest_path: Path) -> Task:
    if cols["label"] is None:
        return custom_task(manifest_path.stem, binary_cols, kind="multilabel", keep_order=True)
    labels = {_normalise_label(v) for v in table[cols["label"]] if v.strip()}
    if cols["label"].lower() in GRADE_COLUMNS and labels <= {"0", "1", "2", "3", "4"} and len(labels) >= 2:
        return get_task("dr-grading")
    return custom_task(manifest_path.stem, labels)


def read_manifest(path: Path, task: Task | str | None, *, skip_bad: bool, max_pixels: int, source: str,
                  confined: bool = False, reader: ManifestTable = CSV_TABLE) -> Dataset:
    """Read a manifest (CSV unless `reader` says otherwise); image paths are relative to its folder (or bare ids
    found beneath it).

    Every path a row names must resolve (symbolic links followed) inside the manifest's folder or under a data root
    of this server (common.PathGuard); `confined` (set for uploads, and implied for a folder extracted from a zip)
    allows the manifest's folder only. A row that reaches elsewhere is refused: skipped and listed with skip_bad,
    else the read fails naming the first such rows.
    """
    path = path.resolve()
    return manifest_dataset(path, reader.read(path, None), task, skip_bad=skip_bad, max_pixels=max_pixels,
                            source=source, confined=confined, first_line=reader.first_line)


def manifest_dataset(manifest_path: Path, table: pd.DataFrame, task: Task | str | None, *, skip_bad: bool,
                     max_pixels: int, source: str, confined: bool = False, first_line: int = 2) -> Dataset:
    """The Dataset of a manifest table read from `manifest_path` (every cell text): columns found, task inferred or
    checked, rows built and guarded (read_manifest); `first_line` numbers the rows in messages."""
    if table.empty:
        raise InputError(f"{manifest_path}: the manifest has a header but no rows")
    cols = manifest_columns(table)
    if cols["path"] is None:
        raise InputError(f"{manifest_path}: missing image column; expected one of {', '.join(PATH_COLUMNS)} "
                         f"(found {', '.join(table.columns)})")
    task_obj = get_task(task) if task is not None else None
    used = {v for v in cols.values() if v}
    binary_cols: list[str] = []
    if task_obj is not None and task_obj.kind == "multilabel":
        by_lower = {c.lower(): c for c in table.columns}
        missing = [c for c in task_obj.classes if c.lower() not in by_lower]
        if missing:
            raise InputError(f"{manifest_path}: missing label columns {missing} for task {task_obj.name!r}")
        binary_cols = [by_lower[c.lower()] for c in task_obj.classes]
    elif cols["label"] is None:
        binary_cols = _binary_columns(table, used)
        if task_obj is not None or len(binary_cols) < 2:
            raise InputError(f"{manifest_path}: missing label column; expected one of {', '.join(LABEL_COLUMNS)}, "
                             "or one 0/1 column per label for multi-label data "
                             f"(found {', '.join(table.columns)})")
    if task_obj is None:
        task_obj = _infer_task(table, cols, binary_cols, manifest_path)
    if task_obj.kind == "multilabel":
        by_lower = {c.lower(): c for c in table.columns}
        binary_cols = [by_lower[c.lower()] for c in task_obj.classes]

    ids = table[cols["path"]].str.strip()
    dup = ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].iloc[0]
        lines = [str(i + first_line) for i in ids.index[ids == first][:3]]
        raise InputError(f"{manifest_path}: duplicate image id {first!r} on lines {', '.join(lines)}")

    extras = extra_columns(table, used | set(binary_cols), task_obj)
    log = ProblemLog(source, skip_bad)
    index = ImageIndex(manifest_path.parent)
    guard = PathGuard(manifest_path.parent, confined)
    outside: list[tuple[int, str]] = []
    multilabel = task_obj.kind == "multilabel"
    rows = []
    for i, record in enumerate(table.to_dict("records")):
        line = f"{manifest_path}, line {i + first_line}"
        image_id = record[cols["path"]].strip()
        try:
            full = index.find(image_id, manifest_path.stem, guard)
            split = None
            if cols["split"] and record[cols["split"]].strip():
                split = split_name(record[cols["split"]])
                if split is None:
                    raise InputError(f"unknown split {record[cols['split']]!r} (use train, val or test)")
            patient = (record[cols["patient"]].strip() or None) if cols["patient"] else None
            row = {"image_id": image_id, "path": full, "patient_id": patient, "split": split}
            row.update({name: (record[column].strip() or None) for column, name in extras.items()})
            if multilabel:
                for cls, col in zip(task_obj.classes, binary_cols):
                    value = _normalise_label(record[col])
                    if value not in ("0", "1"):
                        raise InputError(f"column {col!r} holds {record[col]!r}, expected 0 or 1")
                    row[cls] = int(value)
                row["label"] = ""
            else:
                raw = _normalise_label(record[cols["label"]])
                if not raw:
                    raise InputError("empty label")
                row["label"] = task_obj.canonical_label(raw)
        except InputError as exc:
            if isinstance(exc, OutsidePath):
                outside.append((i + first_line, exc.value))
            log.add(f"{line}: {exc}")
            continue
        rows.append(row)
    if outside and not skip_bad:
        _refuse_outside(manifest_path, outside, guard)
    columns = (["image_id", "path", "label", "patient_id", "split"] + (list(task_obj.classes) if multilabel else [])
               + list(extras.values()))
    out = pd.DataFrame(rows, columns=columns)
    return finish(out, task_obj, source, log, str(manifest_path.parent), max_pixels)


# -- the formats ---------------------------------------------------------------------------------------------
def manifest_format(name: str, reader: ManifestTable, priority: int, **format_fields) -> DatasetFormat:
    """The DatasetFormat of a tabular manifest: it reads files of reader.suffix; in a folder, one such manifest is
    claimed at `priority`, several are refused, and one beside images that lacks a needed column is explained
    (at priority + 5) instead of the images being read as a class folder. `format_fields` overrides the rest."""
    kind, suffix = reader.kind, reader.suffix

    def one_manifest(scan) -> Path | None:
        manifests = [f for f in scan.files_with_suffix(suffix) if is_manifest(f, reader)]
        if len(manifests) > 1:
            raise InputError(f"{scan.root}: several {kind} manifests ({', '.join(f.name for f in manifests)}); "
                             "give the path of the one to use")
        return manifests[0] if manifests else None

    def unusable_table(scan) -> Path | None:
        """Images in (at most) one folder beside such a file: it was meant as the manifest; say what it lacks rather
        than reading the image folder as the only class (or the folder as holding no dataset)."""
        tables = scan.files_with_suffix(suffix)
        if tables and len({f.name for f in scan_class_folders(scan)}) < 2:
            raise InputError(f"{scan.root}: found no usable {kind} manifest: "
                             + "; ".join(manifest_problem(f, reader) for f in tables))
        return None

    def read(path: Path, task, options) -> Dataset:
        return read_manifest(path, task, skip_bad=options.skip_bad, max_pixels=options.max_pixels,
                             source=options.source, confined=options.confined, reader=reader)

    fields = dict(
        file_description=f"a {suffix} manifest", folder_description=f"a {kind} manifest", suffixes=(suffix,),
        detectors=((priority, one_manifest), (priority + 5, unusable_table)),
        alone_hint=f"A {kind} manifest uploaded on its own brings no images: upload a zip holding the {kind} file "
                   "together with its images, or register a server-side folder that holds both.")
    return DatasetFormat(name=name, read=read, **{**fields, **format_fields})


def example_manifest(folder: Path, task: Task) -> pd.DataFrame:
    """A manifest format's tiny example: writes its images under folder/images/ and returns the table naming them
    (path, label, patient_id), for the format's own example writer to save as its manifest file."""
    rows = write_example_images(folder, task, lambda label, i: f"images/{label}-{i}.png")
    return pd.DataFrame([(path, label, f"{label}-{i}") for i, (path, label) in enumerate(rows)],
                        columns=["path", "label", "patient_id"])


def write_example(folder: Path, task: Task) -> None:
    """The format's tiny example: images/ and cases.csv."""
    write_csv(example_manifest(folder, task), folder / "cases.csv")


FORMAT = manifest_format("manifest", CSV_TABLE, priority=10, example=write_example)
