"""Label schemas (tasks): class order, kind, referral levels, binary views and penalty matrices."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import InputError

KINDS = ("multiclass", "binary", "ordinal", "multilabel")
REFERRAL_LEVELS = ("urgent", "routine", "observation")
# Far above any clinical schema (ICD chapters, RFMiD's 46 labels); a count read from a file is checked
# against it before anything is allocated per class (a label value of 1e9 must not become 1e9 classes).
MAX_CLASSES = 1000


def costless_mistakes_problem(matrix: np.ndarray) -> str | None:
    """Why a square penalty matrix in which no mistake costs anything (all zeros off the diagonal) is useless, or
    None: every weighted error would be 0, so every model and decision rule would look perfect."""
    off_diagonal = matrix[~np.eye(matrix.shape[0], dtype=bool)]
    if off_diagonal.size and off_diagonal.any():
        return None
    return ("is all zeros" if not matrix.any() else "costs 0 for every mistake") + (
        ": no error would cost anything, so every model and decision rule would look perfect; give at least one "
        "mistake (a cell off the diagonal) a cost above 0")


def penalty_problem(matrix: np.ndarray) -> str | None:
    """Why a square penalty matrix (rows = true, columns = predicted) cannot be used in a task or a file, or None."""
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        return "entries must be finite and non-negative"
    if problem := costless_mistakes_problem(matrix):
        return problem
    diagonal = np.diag(matrix)
    if diagonal.any():
        i = int(np.flatnonzero(diagonal)[0])
        return (f"has {diagonal[i]:g} on its diagonal (row {i + 1}): a correct call must cost 0; "
                "put the costs of errors off the diagonal")
    return None


@dataclass(frozen=True)
class BinaryView:
    """A two-class reading of a task: `positive` classes vs `negative` classes (others excluded)."""

    name: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "positive": list(self.positive), "negative": list(self.negative)}


@dataclass(frozen=True)
class Task:
    """A label schema. `classes` is the canonical order of every probability column and matrix axis."""

    name: str
    title: str
    modality: str
    kind: str
    classes: tuple[str, ...]
    referral_level: tuple[tuple[str, str], ...] = ()
    penalty_matrix: tuple[tuple[float, ...], ...] = ()
    binary_views: tuple[BinaryView, ...] = ()
    description: str = ""
    # For ordinal tasks: grades >= this index are "referable".
    referable_from: int | None = None
    aliases: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.classes) < 2 and self.kind != "multilabel":
            raise InputError(f"task {self.name!r}: needs at least two classes")
        if len(self.classes) > MAX_CLASSES:
            raise InputError(f"task {self.name!r}: {len(self.classes):,} classes, above the limit of {MAX_CLASSES}")
        if len(set(self.classes)) != len(self.classes):
            raise InputError(f"task {self.name!r}: class names repeat: {list(self.classes)}")
        blank = [i + 1 for i, c in enumerate(self.classes) if not str(c).strip()]
        if blank:
            raise InputError(f"task {self.name!r}: class name number {blank[0]} is empty; every class needs a name")
        by_case: dict[str, str] = {}
        for cls in self.classes:
            other = by_case.setdefault(cls.strip().lower(), cls)
            if other != cls:
                raise InputError(f"task {self.name!r}: classes {other!r} and {cls!r} differ only in case (or "
                                 "spaces); labels are matched ignoring case, so they cannot be told apart")
        levels = dict(self.referral_level)
        for cls, level in levels.items():
            if cls not in self.classes:
                raise InputError(f"task {self.name!r}: referral level given for unknown class {cls!r}")
            if level not in REFERRAL_LEVELS:
                raise InputError(f"task {self.name!r}: referral level {level!r} must be one of {REFERRAL_LEVELS}")
        if self.penalty_matrix:
            m = np.asarray(self.penalty_matrix, dtype=float)
            k = len(self.classes)
            if m.shape != (k, k):
                raise InputError(f"task {self.name!r}: penalty matrix must be {k}x{k}, got {m.shape}")
            problem = penalty_problem(m)
            if problem:
                raise InputError(f"task {self.name!r}: penalty matrix {problem}")
        for view in self.binary_views:
            for cls in view.positive + view.negative:
                if cls not in self.classes:
                    raise InputError(f"task {self.name!r}: binary view {view.name!r} names unknown class {cls!r}")

    # -- derived views -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def referral_levels(self) -> dict[str, str]:
        return dict(self.referral_level)

    def class_index(self, name: str) -> int:
        return self.classes.index(name)

    def penalty(self) -> np.ndarray:
        """The default penalty matrix (rows = true, columns = predicted, in `classes` order)."""
        if self.penalty_matrix:
            return np.asarray(self.penalty_matrix, dtype=float)
        k = len(self.classes)
        return np.ones((k, k)) - np.eye(k)

    def urgent_classes(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if self.referral_levels.get(c) == "urgent")

    def default_view(self) -> BinaryView | None:
        """The headline binary view: the first declared one (e.g. urgent referral vs rest)."""
        return self.binary_views[0] if self.binary_views else None

    def view(self, name: str) -> BinaryView:
        for v in self.binary_views:
            if v.name == name:
                return v
        raise InputError(f"task {self.name!r} has no binary view {name!r}; views: {[v.name for v in self.binary_views]}")

    def canonical_label(self, raw: str) -> str:
        """Map a raw label (any case, or a known alias) to the class name; InputError if unknown."""
        text = str(raw).strip()
        aliases = {k.lower(): v for k, v in self.aliases}
        for cls in self.classes:
            if text == cls or text.lower() == cls.lower():
                return cls
        if text.lower() in aliases:
            return aliases[text.lower()]
        raise InputError(f"unknown label {text!r} for task {self.name!r}; expected one of {list(self.classes)}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "modality": self.modality,
            "kind": self.kind,
            "classes": list(self.classes),
            "referral_levels": self.referral_levels,
            "penalty_matrix": [list(r) for r in self.penalty_matrix],
            "binary_views": [v.to_dict() for v in self.binary_views],
            "description": self.description,
            "referable_from": self.referable_from,
            "aliases": dict(self.aliases),
        }


def _reorder(matrix_in_order: list[list[float]], order: list[str], classes: tuple[str, ...]) -> tuple:
    idx = [order.index(c) for c in classes]
    m = np.asarray(matrix_in_order, dtype=float)[np.ix_(idx, idx)]
    return tuple(tuple(float(x) for x in row) for row in m)


# The paper's matrix is printed in NORMAL, DRUSEN, CNV, DME order; stored here in class order.
KERMANY_OCT_PENALTY = _reorder(
    [[0, 1, 1, 1], [1, 0, 1, 1], [4, 2, 0, 1], [4, 2, 1, 0]],
    ["NORMAL", "DRUSEN", "CNV", "DME"],
    ("CNV", "DME", "DRUSEN", "NORMAL"),
)

OCT_KERMANY = Task(
    name="oct-kermany",
    title="Retinal OCT (Kermany 2018): CNV / DME / DRUSEN / NORMAL",
    modality="OCT",
    kind="multiclass",
    classes=("CNV", "DME", "DRUSEN", "NORMAL"),
    referral_level=(("CNV", "urgent"), ("DME", "urgent"), ("DRUSEN", "routine"), ("NORMAL", "observation")),
    penalty_matrix=KERMANY_OCT_PENALTY,
    binary_views=(
        BinaryView("urgent referral vs rest", ("CNV", "DME"), ("DRUSEN", "NORMAL")),
        BinaryView("CNV vs NORMAL", ("CNV",), ("NORMAL",)),
        BinaryView("DME vs NORMAL", ("DME",), ("NORMAL",)),
        BinaryView("DRUSEN vs NORMAL", ("DRUSEN",), ("NORMAL",)),
    ),
    description="Choroidal neovascularisation and diabetic macular oedema need urgent referral; "
    "drusen routine; normal scans observation.",
)

CXR_KERMANY = Task(
    name="cxr-kermany",
    title="Pediatric chest X-ray (Kermany 2018): NORMAL / BACTERIAL / VIRAL",
    modality="X-ray",
    kind="multiclass",
    classes=("NORMAL", "BACTERIAL", "VIRAL"),
    referral_level=(("NORMAL", "observation"), ("BACTERIAL", "urgent"), ("VIRAL", "urgent")),
    binary_views=(
        BinaryView("pneumonia vs normal", ("BACTERIAL", "VIRAL"), ("NORMAL",)),
        BinaryView("bacterial vs viral", ("BACTERIAL",), ("VIRAL",)),
    ),
    # Kermany's file names say bacteria/virus; common re-exports of the set name their class folders
    # PNEUMONIA_BACTERIAL / PNEUMONIA_VIRAL.
    aliases=(("bacteria", "BACTERIAL"), ("virus", "VIRAL"), ("pneumonia_bacterial", "BACTERIAL"),
             ("pneumonia_viral", "VIRAL"), ("pneumonia-bacterial", "BACTERIAL"), ("pneumonia-viral", "VIRAL"),
             ("bacterial pneumonia", "BACTERIAL"), ("viral pneumonia", "VIRAL")),
    description="Pneumonia (bacterial or viral) vs normal, and bacterial vs viral pneumonia.",
)

DR_GRADING = Task(
    name="dr-grading",
    title="Diabetic retinopathy grading 0-4 (ordinal)",
    modality="fundus",
    kind="ordinal",
    classes=("0", "1", "2", "3", "4"),
    referral_level=(("0", "observation"), ("1", "routine"), ("2", "urgent"), ("3", "urgent"), ("4", "urgent")),
    penalty_matrix=tuple(tuple(float(abs(i - j)) for j in range(5)) for i in range(5)),
    binary_views=(BinaryView("referable (grade >= 2) vs not", ("2", "3", "4"), ("0", "1")),),
    referable_from=2,
    description="International grades: 0 none, 1 mild, 2 moderate, 3 severe NPDR, 4 proliferative. "
    "Referable = grade 2 or above.",
)

FUNDUS_MULTILABEL = Task(
    name="fundus-multilabel",
    title="Fundus multi-disease screening (RFMiD style, multi-label)",
    modality="fundus",
    kind="multilabel",
    classes=("DR", "ARMD", "MH", "DN", "MYA", "BRVO", "TSLN", "ODC"),
    referral_level=(("DR", "urgent"), ("ARMD", "urgent"), ("BRVO", "urgent")),
    description="One 0/1 column per disease label; an image may carry several.",
)

_PRESETS: dict[str, Task] = {t.name: t for t in (OCT_KERMANY, CXR_KERMANY, DR_GRADING, FUNDUS_MULTILABEL)}


def list_tasks() -> list[str]:
    """Names of the built-in task presets (drives dropdowns and contract tests)."""
    return list(_PRESETS)


def task_from_dict(data: dict, source: str = "task definition") -> Task:
    """Build a Task from a plain mapping (a user's JSON/TOML file, or a saved run config)."""
    raw_classes = data.get("classes")
    if isinstance(raw_classes, (str, bytes)) or not isinstance(raw_classes, (list, tuple, type(None))):
        raise InputError(f"{source}: 'classes' must be a list of class names, e.g. [\"CNV\", \"DME\"], not "
                         f"{type(raw_classes).__name__} {str(raw_classes)[:40]!r}")
    try:
        classes = tuple(str(c) for c in data["classes"])
        name = str(data.get("name") or "custom")
    except KeyError as exc:
        raise InputError(f"{source}: missing field {exc.args[0]!r} (needs at least 'classes')") from None
    except TypeError:
        raise InputError(f"{source}: 'classes' must be a list of names") from None
    # str(None) would make a class called "None"; a number is a label value, not a name (JSON null, 1, true).
    unnamed = [i + 1 for i, c in enumerate(data["classes"]) if not isinstance(c, str)]
    if unnamed:
        bad = data["classes"][unnamed[0] - 1]
        raise InputError(f"{source}: class name number {unnamed[0]} is {json.dumps(bad)}, not text; write every "
                         "class name in quotes, e.g. [\"CNV\", \"DME\"]")
    penalty = data.get("penalty_matrix") or ()
    try:
        penalty = tuple(tuple(float(x) for x in row) for row in penalty)
    except (TypeError, ValueError):
        raise InputError(f"{source}: 'penalty_matrix' must be a list of rows of numbers") from None
    if len({len(row) for row in penalty}) > 1:
        raise InputError(f"{source}: 'penalty_matrix' rows differ in length ({[len(row) for row in penalty]}); "
                         f"it must be {len(classes)}x{len(classes)}, rows = true class, columns = called class")
    views = []
    for v in data.get("binary_views") or []:
        try:
            views.append(BinaryView(str(v["name"]), tuple(v["positive"]), tuple(v["negative"])))
        except (KeyError, TypeError):
            raise InputError(f"{source}: each binary view needs 'name', 'positive' and 'negative'") from None
    levels = data.get("referral_levels") or {}
    if not isinstance(levels, dict):
        raise InputError(f"{source}: 'referral_levels' must map class names to urgent/routine/observation")
    # Only when the definition says nothing about views: an explicit empty list (e.g. from to_dict) stays empty.
    if "binary_views" not in data and any(lv == "urgent" for lv in levels.values()):
        urgent = tuple(c for c in classes if levels.get(c) == "urgent")
        rest = tuple(c for c in classes if c not in urgent)
        if urgent and rest:
            views.append(BinaryView("urgent referral vs rest", urgent, rest))
    try:
        return _task(data, name, classes, levels, penalty, views)
    except InputError as exc:  # the Task's own checks name the task; a file's reader also needs the file
        if source == "task definition":
            raise
        raise InputError(f"{source}: {exc}") from None


def _task(data: dict, name: str, classes: tuple, levels: dict, penalty: tuple, views: list) -> Task:
    return Task(
        name=name,
        title=str(data.get("title") or name),
        modality=str(data.get("modality") or "other"),
        kind=str(data.get("kind") or "multiclass"),
        classes=classes,
        referral_level=tuple((str(k), str(v)) for k, v in levels.items()),
        penalty_matrix=penalty,
        binary_views=tuple(views),
        description=str(data.get("description") or ""),
        referable_from=data.get("referable_from"),
        aliases=tuple((str(k), str(v)) for k, v in (data.get("aliases") or {}).items()),
    )


def load_task_file(path: str | Path) -> Task:
    """Read a user-defined task from a small JSON or TOML file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read task file ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid {path.suffix.lstrip('.') or 'JSON'} task file: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a task file must hold a table/object at the top level")
    return task_from_dict(data, source=str(path))


def get_task(name_or_path: str | Path | Task) -> Task:
    """One entry point: a preset name, a path to a JSON/TOML task file, or a Task (returned as is)."""
    if isinstance(name_or_path, Task):
        return name_or_path
    key = str(name_or_path)
    if key in _PRESETS:
        return _PRESETS[key]
    if Path(key).suffix.lower() in (".json", ".toml") and Path(key).exists():
        return load_task_file(key)
    raise InputError(f"unknown task {key!r}; presets: {list_tasks()} (or give a .json/.toml task file)")
