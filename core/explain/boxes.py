"""Lesion boxes from a CSV (the built-in demo's lesions.csv or a user's upload), matched to a dataset's images.

A CSV has columns x0, y0, x1, y1 (pixels of the original image, inclusive: the box covers columns x0..x1 and rows
y0..y1, the convention of the built-in demo's lesions.csv) and either `image_id` or `path` (relative to the CSV's
folder, or any trailing part of the image's path, e.g. `test/CNV/CNV-12-3.jpeg`). Several rows per image give
several boxes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from core.data.synthetic import LESIONS_FILE
from core.errors import InputError

BOX_COLUMNS = ("x0", "y0", "x1", "y1")
Box = tuple[float, float, float, float]


def find_lesions_csv(data: str | Path) -> Path | None:
    """The lesion boxes CSV beside a dataset: in its folder or up to two above (the demo's lesions.csv sits in the
    folder above test/)."""
    data = Path(data).resolve()
    for folder in (data, data.parent, data.parent.parent):
        if (folder / LESIONS_FILE).is_file():
            return folder / LESIONS_FILE
    return None


def read_boxes(source, *, name: str | None = None) -> pd.DataFrame:
    """The boxes table (columns image_id or path, x0, y0, x1, y1, optional label) from a CSV path, an uploaded
    file object or a DataFrame, validated: InputError naming the file, row and problem."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "boxes CSV")
    if isinstance(source, pd.DataFrame):
        table = source.copy()
    else:
        try:
            data = source if isinstance(source, (str, os.PathLike)) else io.BytesIO(source.read())
            table = pd.read_csv(data, dtype={"image_id": str, "path": str})
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"{label}: cannot read it as a CSV of boxes ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in BOX_COLUMNS if c not in table.columns]
    if missing or not ({"image_id", "path"} & set(table.columns)):
        need = ", ".join(missing) if missing else "image_id or path"
        raise InputError(f"{label}: missing column(s) {need}; a boxes CSV needs image_id or path, and x0, y0, x1, y1")
    for column in BOX_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.astype(float))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{label}: row {row + 2} has a non-numeric {column} ({table[column].iloc[row]!r})")
        table[column] = values.astype(float)
    negative = (table[list(BOX_COLUMNS)] < 0).any(axis=1)
    empty = (table["x1"] < table["x0"]) | (table["y1"] < table["y0"])
    for problem, rows in (("a negative coordinate", negative), ("x1 < x0 or y1 < y0 (an empty box)", empty)):
        if rows.any():
            row = int(np.flatnonzero(rows.to_numpy())[0])
            raise InputError(f"{label}: row {row + 2} has {problem}")
    return table.reset_index(drop=True)


def match_boxes(boxes: pd.DataFrame, images: pd.DataFrame, base_dir: str | os.PathLike | None = None
                ) -> tuple[dict[str, list[Box]], list[str]]:
    """Boxes per image_id of `images` (a dataset table with image_id and path), and the problems found (box rows
    whose image is not in the dataset or is ambiguous). Rows match by image_id when the CSV has that column,
    else by path: resolved against `base_dir`, or failing that, as a trailing part of the dataset paths."""
    ids = images["image_id"].astype(str).tolist()
    by_id: dict[str, list[Box]] = {}
    problems: list[str] = []
    if "image_id" in boxes.columns:
        known = set(ids)
        for row in boxes.itertuples(index=False):
            image_id = str(row.image_id)
            if image_id in known:
                by_id.setdefault(image_id, []).append(_box(row))
            else:
                problems.append(f"box for image_id {image_id!r}: not in the dataset")
        return by_id, problems

    absolute = {_normal(p): i for p, i in zip(images["path"].astype(str), ids)}
    suffixes: dict[str, set[str]] = {}
    for path, image_id in zip(images["path"].astype(str), ids):
        parts = PurePosixPath(_normal(path)).parts
        for k in range(1, min(len(parts), 5) + 1):
            suffixes.setdefault("/".join(parts[-k:]), set()).add(image_id)
    for row in boxes.itertuples(index=False):
        rel = str(row.path).replace("\\", "/")
        rel = rel[2:] if rel.startswith("./") else rel
        image_id = None
        if base_dir is not None:
            image_id = absolute.get(_normal(Path(base_dir) / rel))
        if image_id is None:
            image_id = absolute.get(_normal(rel))
        if image_id is None:
            candidates = suffixes.get("/".join(PurePosixPath(rel).parts[-5:]), set())
            if len(candidates) == 1:
                image_id = next(iter(candidates))
            elif len(candidates) > 1:
                problems.append(f"box for {rel!r}: matches {len(candidates)} images; give a longer path")
                continue
        if image_id is None:
            problems.append(f"box for {rel!r}: not in the dataset")
            continue
        by_id.setdefault(image_id, []).append(_box(row))
    return by_id, problems


def _box(row) -> Box:
    return (float(row.x0), float(row.y0), float(row.x1), float(row.y1))


def _normal(path) -> str:
    return os.path.normpath(os.path.abspath(str(path))).replace("\\", "/")
