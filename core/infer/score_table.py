"""A score table from elsewhere, read and understood: the file (CSV or parquet, bounded in size, every cell as text),
which of its columns names the images, scores each class and holds the file's own calls (matched by name, ignoring
case and spaces, with the task's label aliases), and what kind of scores they are (probabilities, logits,
percentages) with the transform that makes them probabilities. core.infer.imported aligns the table to a test set
and writes it as a predictions table."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.data.tasks import MAX_CLASSES, Task
from core.errors import InputError

SCORE_SUFFIXES = (".csv", ".parquet")  # what the uploader and the command line accept
MAX_SCORE_FILE_BYTES = 256 * 2**20  # a score table of a million images with a few classes is well under this
MAX_SCORE_ROWS = 2_000_000
MAX_SCORE_COLUMNS = 2 * MAX_CLASSES + 16
ROW_SUM_TOLERANCE = 0.02  # probabilities rounded in a CSV (0.33 x 3) are renormalised; a larger gap is refused

SCORE_KINDS = {"probabilities": "probabilities (0 to 1)", "logits": "logits (any real number)",
               "percent": "percentages (0 to 100)"}
TRANSFORMS = {"none": "none: they are probabilities already",
              "softmax": "softmax over the classes (logits of one model)",
              "sigmoid": "sigmoid per column (one logit per class or label)",
              "scale": "divide by 100 (percentages)"}
ID_COLUMNS = ("image_id", "imageid", "image", "file", "filename", "file_name", "path", "filepath", "name", "id")
PREDICTED_COLUMNS = ("predicted", "prediction", "pred", "predicted_label", "predicted_class")
_SCORE_AFFIXES = ("probability", "prob", "score", "logit", "p")  # prob_CNV, CNV_score, p(CNV) ...


def _key(text) -> str:
    """Names compared ignoring case, spaces, underscores and hyphens."""
    return re.sub(r"[\s_\-()\[\]]+", "", str(text).lower())


# -- the file ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ScoreFile:
    """A score table as read: every cell as text (numbers are checked per column later), its name and SHA-256.
    `first_line`: the line (CSV) or row (parquet) number of the first data row, for messages."""

    name: str
    sha256: str
    table: pd.DataFrame
    first_line: int
    unit: str  # "line" (CSV) or "row" (parquet)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.table.columns]

    def where(self, positions) -> str:
        """'lines 2, 5' / 'row 3' for the given 0-based data rows (the first five)."""
        numbers = [int(p) + self.first_line for p in list(positions)[:5]]
        more = " ..." if len(list(positions)) > 5 else ""
        return f"{self.unit}{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}{more}"


def read_score_file(source: bytes | str | Path, name: str | None = None) -> ScoreFile:
    """Read a CSV or parquet score table (a path, or the bytes of an upload named `name`), bounded in size."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), str(name or "scores.csv")
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: score file not found")
        if path.stat().st_size > MAX_SCORE_FILE_BYTES:
            raise InputError(f"{path.name}: {path.stat().st_size / 2**20:,.0f} MB, above the limit of "
                             f"{MAX_SCORE_FILE_BYTES // 2**20} MB for a score file")
        data, name = path.read_bytes(), name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise InputError(f"{name}: a score file is a {' or '.join(SCORE_SUFFIXES)} file")
    if len(data) > MAX_SCORE_FILE_BYTES:
        raise InputError(f"{name}: {len(data) / 2**20:,.0f} MB, above the limit of {MAX_SCORE_FILE_BYTES // 2**20} "
                         "MB for a score file")
    digest = hashlib.sha256(data).hexdigest()
    table = _read_parquet(data, name) if suffix == ".parquet" else _read_csv(data, name)
    if table.shape[1] > MAX_SCORE_COLUMNS:
        raise InputError(f"{name}: {table.shape[1]:,} columns, above the limit of {MAX_SCORE_COLUMNS:,}")
    if len(table) > MAX_SCORE_ROWS:
        raise InputError(f"{name}: {len(table):,} rows, above the limit of {MAX_SCORE_ROWS:,}")
    if len(table) == 0:
        raise InputError(f"{name}: the score file has no rows")
    names = [str(c).strip() for c in table.columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise InputError(f"{name}: column names repeat: {repeated[:5]}")
    table.columns = names
    csv = suffix == ".csv"
    return ScoreFile(name, digest, table.reset_index(drop=True), 2 if csv else 1, "line" if csv else "row")


def _read_csv(data: bytes, name: str) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not a UTF-8 text file") from None
    header = text.split("\n", 1)[0]
    sep = max((",", ";", "\t"), key=header.count)
    try:
        # Every cell as text: a number column with one stray word is reported by line, not silently turned to NaN.
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                           nrows=MAX_SCORE_ROWS + 1)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{name}: not a readable CSV table ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from None


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(io.BytesIO(data))
        if file.metadata.num_rows > MAX_SCORE_ROWS:
            raise InputError(f"{name}: {file.metadata.num_rows:,} rows, above the limit of {MAX_SCORE_ROWS:,}")
        table = file.read().to_pandas()
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise InputError(f"{name}: not a readable parquet table ({exc})") from None
    # Text as in a CSV: numbers keep their value (repr round-trips floats), missing cells become "".
    return table.apply(lambda col: col.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v))
                                           else repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)))


# -- which column is what ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnMapping:
    """The file's image column, the score column of each class (one class only for a two-class task given one
    score column), and its `predicted` column when it has one."""

    id_column: str
    columns: tuple[tuple[str, str], ...]  # (class, file column) in task order
    predicted_column: str | None = None

    @property
    def by_class(self) -> dict[str, str]:
        return dict(self.columns)

    def to_dict(self) -> dict:
        return {"image": self.id_column, "classes": self.by_class, "predicted": self.predicted_column}


def _class_names(task: Task) -> dict[str, str]:
    """Normalised name -> class: the classes and the task's label aliases."""
    names = {_key(alias): cls for alias, cls in task.aliases}
    names.update({_key(cls): cls for cls in task.classes})
    return names


def _score_class(column: str, names: dict[str, str]) -> str | None:
    key = _key(column)
    if key in names:
        return names[key]
    for affix in _SCORE_AFFIXES:
        for stripped in (key.removeprefix(affix), key.removesuffix(affix)):
            if stripped != key and stripped in names:
                return names[stripped]
    return None


def suggest_mapping(columns: Sequence[str], task: Task) -> ColumnMapping:
    """The mapping matched by name: the image column, each class's score column (classes without a match are
    left out), the `predicted` column. InputError when no column names the images."""
    keys = {_key(c): c for c in columns}
    id_column = next((keys[_key(n)] for n in ID_COLUMNS if _key(n) in keys), None)
    if id_column is None:
        raise InputError(f"no column names the images: call one of them {ID_COLUMNS[0]!r} (or file, filename, "
                         f"path); the columns are {list(columns)[:12]}")
    predicted = next((keys[_key(n)] for n in PREDICTED_COLUMNS if _key(n) in keys), None)
    names, found = _class_names(task), {}
    for column in columns:
        if column in (id_column, predicted):
            continue
        cls = _score_class(column, names)
        if cls is not None and cls not in found:
            found[cls] = column
    return ColumnMapping(id_column, tuple((c, found[c]) for c in task.classes if c in found), predicted)


def mapping_from_args(columns: Sequence[str], task: Task, pairs: Sequence[str] | None = None) -> ColumnMapping:
    """The suggested mapping with `CLASS=COLUMN` pairs (the command line's --columns) put over it."""
    mapping = suggest_mapping(columns, task)
    chosen = mapping.by_class
    for pair in pairs or ():
        cls, sep, column = str(pair).partition("=")
        if not sep or not cls.strip() or not column.strip():
            raise InputError(f"--columns {pair!r}: write CLASS=COLUMN, e.g. {task.classes[0]}=prob_{task.classes[0]}")
        chosen[task.canonical_label(cls)] = column.strip()
    return ColumnMapping(mapping.id_column, tuple((c, chosen[c]) for c in task.classes if c in chosen),
                         mapping.predicted_column)


def one_column(mapping: ColumnMapping, task: Task) -> bool:
    """A two-class task scored by one column (the mapped class's score; the other class gets 1 - p)."""
    return len(mapping.columns) == 1 and task.num_classes == 2 and task.kind != "multilabel"


def check_mapping(mapping: ColumnMapping, columns: Sequence[str], task: Task) -> None:
    """InputError naming a column the file lacks, a column used twice, or classes without a score column."""
    used = [mapping.id_column, *(c for _, c in mapping.columns)] + ([mapping.predicted_column]
                                                                    if mapping.predicted_column else [])
    unknown = [c for c in used if c not in columns]
    if unknown:
        raise InputError(f"the score file has no column {unknown[0]!r}; its columns are {list(columns)[:12]}")
    twice = sorted({c for c in used if used.count(c) > 1})
    if twice:
        raise InputError(f"column {twice[0]!r} is mapped to more than one thing; each column scores one class")
    if one_column(mapping, task):
        return
    missing = [c for c in task.classes if c not in mapping.by_class]
    if missing:
        raise InputError(f"no score column for {len(missing)} of the task's {task.num_classes} classes "
                         f"({missing[:8]}); map a column to each class" +
                         (" (or one column to one class: the other gets 1 - p)" if task.num_classes == 2 else ""))


def score_values(scores: ScoreFile, mapping: ColumnMapping) -> np.ndarray:
    """The mapped score columns as an (n, k) float matrix; InputError naming non-numeric or missing cells."""
    out = []
    for cls, column in mapping.columns:
        text = scores.table[column].astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce")
        empty = np.flatnonzero((text == "").to_numpy())
        if len(empty):
            raise InputError(f"column {column!r} ({cls}) has no value on {scores.where(empty)}")
        bad = np.flatnonzero((values.isna() | ~np.isfinite(values.to_numpy(dtype=float))).to_numpy())
        if len(bad):
            raise InputError(f"column {column!r} ({cls}) holds values that are not finite numbers on "
                             f"{scores.where(bad)} (e.g. {text.iat[bad[0]][:40]!r})")
        out.append(values.to_numpy(dtype=float))
    return np.column_stack(out)


# -- what kind of scores ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreDetection:
    kind: str  # a key of SCORE_KINDS
    reason: str
    transform: str  # the proposed key of TRANSFORMS


def default_transform(kind: str, task: Task, single_column: bool) -> str:
    """The transform a kind of scores needs: softmax for a row of logits over the classes, sigmoid for one logit
    per label (multi-label) or a single column, divide by 100 for percentages, none for probabilities."""
    if kind not in SCORE_KINDS:
        raise InputError(f"scores are one of {list(SCORE_KINDS)}, not {kind!r}")
    if kind == "logits":
        return "sigmoid" if single_column or task.kind == "multilabel" else "softmax"
    return "scale" if kind == "percent" else "none"


def detect_scores(values: np.ndarray, task: Task, single_column: bool = False) -> ScoreDetection:
    """Probabilities (all in [0, 1]; rows summing to 1 for a single-label task scored per class), percentages
    (all in [0, 100], some above 1, rows summing to 100 when they should) or logits (anything else)."""
    low, high = float(values.min()), float(values.max())
    per_row = task.kind != "multilabel" and not single_column
    sums = values.sum(axis=1) if per_row else None

    def sum_to(total: float) -> bool:
        return sums is None or bool(np.all(np.abs(sums - total) <= ROW_SUM_TOLERANCE * total))

    if low >= 0 and high <= 1 and sum_to(1.0):
        kind = "probabilities"
        reason = "every value lies between 0 and 1" + (" and each row sums to 1" if per_row else "")
    elif low >= 0 and high <= 100 and high > 1 and sum_to(100.0):
        kind, reason = "percent", (f"values reach {high:g} but none is above 100"
                                   + (" and each row sums to 100" if per_row else ""))
    elif low < 0 or high > 1:
        kind, reason = "logits", f"values run from {low:g} to {high:g}, outside 0 to 1"
    else:
        kind, reason = "logits", "values lie between 0 and 1 but the rows do not sum to 1"
    return ScoreDetection(kind, reason, default_transform(kind, task, single_column))


def to_probabilities(values: np.ndarray, task: Task, transform: str, mapping: ColumnMapping | None = None
                     ) -> tuple[np.ndarray, str]:
    """(n, k) probabilities in task order, and a note of what was done. One column of a two-class task is the
    mapped class's probability (the other class gets 1 - p); a single-label row scored per class by sigmoid or
    percentages is rescaled to sum to 1 (said in the note)."""
    if transform not in TRANSFORMS:
        raise InputError(f"score transform is one of {list(TRANSFORMS)}, not {transform!r}")
    single = mapping is not None and one_column(mapping, task)
    if transform == "softmax":
        if single or task.kind == "multilabel":
            raise InputError("softmax needs one logit per class of a single-label task; use sigmoid for one "
                             "column or for multi-label scores")
        z = np.exp(values - values.max(axis=1, keepdims=True))
        probs, note = z / z.sum(axis=1, keepdims=True), "softmax over the classes"
    elif transform == "sigmoid":
        probs, note = 1.0 / (1.0 + np.exp(-np.clip(values, -700, 700))), "sigmoid per column"
    elif transform == "scale":
        probs, note = values / 100.0, "divided by 100"
    else:
        probs, note = values.astype(float), "none (probabilities as given)"
    if probs.min() < 0 or probs.max() > 1:
        raise InputError(f"after '{transform}' some scores lie outside 0 to 1 ({probs.min():g} to {probs.max():g}): "
                         "these are not probabilities; choose another transform (logits: softmax or sigmoid)")
    if single:
        j = task.classes.index(mapping.columns[0][0])
        full = np.empty((len(probs), 2))
        full[:, j], full[:, 1 - j] = probs[:, 0], 1.0 - probs[:, 0]
        return full, f"{note}; {task.classes[1 - j]} = 1 - {task.classes[j]}"
    if task.kind != "multilabel":
        sums = probs.sum(axis=1)
        if transform == "none" and np.any(np.abs(sums - 1) > ROW_SUM_TOLERANCE):
            rows = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_TOLERANCE)
            raise InputError(f"{len(rows):,} rows of probabilities do not sum to 1 (first at data row {rows[0] + 1}, "
                             f"sum {sums[rows[0]]:.3f}); if they are scores per class, choose sigmoid or softmax")
        if np.any(sums <= 0):
            raise InputError("a row of scores is zero for every class: no class can be called")
        if not np.allclose(sums, 1.0, atol=1e-9):
            probs = probs / sums[:, None]
            note += ", then each row rescaled to sum to 1"
    return probs, note
