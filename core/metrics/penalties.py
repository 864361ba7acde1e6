"""Penalty matrices: weighted error, the penalty-minimising (Bayes) decision, and loading a matrix file."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.tasks import costless_mistakes_problem, penalty_problem
from core.errors import InputError

DECISION_RULES = ("argmax", "min_penalty")


def check_penalty_matrix(penalty, k: int | None = None, source: str = "penalty matrix") -> np.ndarray:
    """A square, finite, non-negative float matrix (k x k when k is given). A Penalty was checked when it was made:
    only its size is compared."""
    if isinstance(penalty, Penalty):
        if k is not None and len(penalty.classes) != k:
            raise InputError(f"{source}: {penalty.describe()} is {len(penalty.classes)}x{len(penalty.classes)}, "
                             f"needs {k}x{k}")
        return penalty.matrix
    try:
        matrix = np.asarray(penalty, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{source}: must be a square table of numbers") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{source}: must be square (rows = true class, columns = predicted), got {matrix.shape}")
    if k is not None and matrix.shape[0] != k:
        raise InputError(f"{source}: must be {k}x{k} for {k} classes, got {matrix.shape[0]}x{matrix.shape[1]}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise InputError(f"{source}: entries must be finite and non-negative")
    return matrix


def refuse_costless_mistakes(matrix: np.ndarray, source: str = "penalty matrix") -> np.ndarray:
    """`matrix` unchanged, or an InputError naming `source` when no mistake costs anything (an all-zero matrix, or
    zeros everywhere off the diagonal). Every place that puts a matrix into use calls this: the editor, the
    workspace setting, the report; files and task definitions refuse it through penalty_problem."""
    problem = costless_mistakes_problem(matrix)
    if problem:
        raise InputError(f"{source} {problem}")
    return matrix


# Where a matrix in use came from (Penalty.source), as the pages and the report name it.
PENALTY_SOURCES = {"default": "the task's default", "saved": "saved in the workspace", "edited": "edited on the "
                   "Penalties page", "file": "read from a file", "given": "given for this report"}


@dataclass(frozen=True)
class Penalty:
    """A penalty matrix put into use: rows = true class, columns = called class, in `classes` order. Checked once,
    when it is made (square, finite, non-negative, some mistake costs something); immutable and hashable (a cache
    key as it is); everything downstream takes it as it is. `np.asarray(penalty)` is its read-only matrix."""

    name: str
    classes: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]
    source: str = "given"  # a key of PENALTY_SOURCES

    def __post_init__(self) -> None:
        if self.source not in PENALTY_SOURCES:
            raise InputError(f"penalty matrix {self.name!r}: source must be one of {tuple(PENALTY_SOURCES)}, "
                             f"got {self.source!r}")
        what = f"penalty matrix {self.name!r}"
        matrix = check_penalty_matrix(self.rows, len(self.classes), what)
        refuse_costless_mistakes(matrix, what)
        object.__setattr__(self, "rows", tuple(tuple(float(x) for x in row) for row in matrix))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @classmethod
    def of(cls, matrix, classes, name: str, source: str = "given") -> "Penalty":
        """A Penalty from any square table of numbers in `classes` order (an InputError naming `name` otherwise)."""
        if isinstance(matrix, Penalty):
            matrix = matrix.rows
        try:
            rows = tuple(tuple(float(x) for x in row) for row in np.asarray(matrix, dtype=float).tolist())
        except (TypeError, ValueError):
            raise InputError(f"penalty matrix {name!r}: must be a square table of numbers") from None
        return cls(str(name), tuple(classes), rows, source)

    @property
    def matrix(self) -> np.ndarray:
        """The matrix as a read-only float array."""
        matrix = np.array(self.rows, dtype=float)
        matrix.setflags(write=False)
        return matrix

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    def for_classes(self, classes) -> "Penalty":
        """This Penalty, when its classes are `classes` in that order; an InputError where it is used otherwise."""
        if self.classes != tuple(str(c) for c in classes):
            raise InputError(f"{self.describe()} is for classes {list(self.classes)}, not {list(classes)}")
        return self

    def describe(self) -> str:
        """'Kermany (saved in the workspace)'."""
        return f"{self.name} ({PENALTY_SOURCES[self.source]})"


def weighted_error(confusion, penalty) -> float:
    """sum(confusion * penalty) / number of images.

    Rows = true class, columns = predicted, both in the task's class order (as in Kermany et al. 2018,
    where NORMAL called CNV costs 1 but CNV called NORMAL costs 4). An empty confusion matrix gives NaN.
    """
    counts = np.asarray(confusion, dtype=float)
    matrix = check_penalty_matrix(penalty, counts.shape[0] if counts.ndim == 2 else None)
    if counts.shape != matrix.shape:
        raise InputError(f"confusion matrix {counts.shape} and penalty matrix {matrix.shape} differ in shape")
    if (counts < 0).any():
        raise InputError("confusion matrix must hold non-negative counts")
    total = counts.sum()
    return float((counts * matrix).sum() / total) if total > 0 else float("nan")


# -- referrals: a third outcome ("referred to a reader") priced per true class ---------------------------------
# The default price of a referral: this share of the cheapest mistake of the matrix, for every true class (a
# reader's second look costs less than the cheapest wrong call, or referring would always pay).
REFERRAL_COST_SHARE = 0.5


def default_referral_cost(penalty) -> np.ndarray:
    """The default referral cost per true class: REFERRAL_COST_SHARE x the cheapest mistake of the matrix."""
    matrix = check_penalty_matrix(penalty)
    off = matrix[~np.eye(matrix.shape[0], dtype=bool)]
    cheapest = float(off[off > 0].min()) if (off > 0).any() else 1.0
    return np.full(matrix.shape[0], REFERRAL_COST_SHARE * cheapest)


def check_referral_cost(cost, k: int, source: str = "referral cost") -> np.ndarray:
    """A finite, non-negative cost per true class (k numbers, in class order)."""
    try:
        vector = np.asarray(cost, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{source}: must be one number per true class") from None
    if vector.size != k:
        raise InputError(f"{source}: needs one number per true class ({k}), got {vector.size}")
    if not np.isfinite(vector).all() or (vector < 0).any():
        raise InputError(f"{source}: entries must be finite and non-negative")
    return vector


def image_penalties(y_true, calls, penalty, referred=None, referral_cost=None) -> np.ndarray:
    """The penalty of each image: penalty[true, call], or referral_cost[true] for a referred image."""
    truth = np.asarray(y_true, dtype=np.int64)
    calls = np.asarray(calls, dtype=np.int64)
    matrix = check_penalty_matrix(penalty)
    values = matrix[truth, calls]
    if referred is None:
        return values
    referred = np.asarray(referred, dtype=bool)
    if referred.shape != truth.shape:
        raise InputError(f"referred mask and true classes differ in length: {referred.shape} vs {truth.shape}")
    cost = default_referral_cost(matrix) if referral_cost is None else check_referral_cost(referral_cost,
                                                                                           matrix.shape[0])
    return np.where(referred, cost[truth], values)


def weighted_error_with_referrals(confusion, referred_counts, penalty, referral_cost) -> float:
    """(sum(confusion * penalty) + sum(referred per true class * referral cost)) / every image, called or
    referred. `confusion` counts the calls made only."""
    counts = np.asarray(confusion, dtype=float)
    matrix = check_penalty_matrix(penalty, counts.shape[0] if counts.ndim == 2 else None)
    referred = check_referral_cost(referred_counts, matrix.shape[0], "referred images per true class")
    cost = check_referral_cost(referral_cost, matrix.shape[0])
    total = counts.sum() + referred.sum()
    return float(((counts * matrix).sum() + (referred * cost).sum()) / total) if total > 0 else float("nan")


def expected_penalty(probabilities, penalty) -> np.ndarray:
    """Expected penalty of each possible call, per image: (n, k) = probabilities @ penalty.

    Entry [i, j] = sum over true classes t of P(t | image i) * penalty[t, j].
    """
    probs = np.asarray(probabilities, dtype=float)
    if probs.ndim != 2:
        raise InputError(f"probabilities must be a 2-D (images x classes) array, got shape {probs.shape}")
    matrix = check_penalty_matrix(penalty, probs.shape[1])
    return probs @ matrix


def decide(probabilities, rule: str = "argmax", penalty=None) -> np.ndarray:
    """Predicted class index per image under a decision rule.

    argmax: the most probable class. min_penalty: the class with the lowest expected penalty given the
    probabilities and the penalty matrix (Bayes decision); with the 0/1 matrix it equals argmax.
    """
    probs = np.asarray(probabilities, dtype=float)
    if rule == "argmax":
        return probs.argmax(axis=1)
    if rule == "min_penalty":
        if penalty is None:
            raise InputError("the penalty-minimising rule needs a penalty matrix")
        return expected_penalty(probs, penalty).argmin(axis=1)
    raise InputError(f"decision rule must be one of {DECISION_RULES}, got {rule!r}")


def confusion_counts(y_true, y_pred, k: int) -> np.ndarray:
    """k x k confusion counts (rows = true class index, columns = predicted index)."""
    truth = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise InputError(f"true and predicted classes must be 1-D and equally long: {truth.shape} vs {pred.shape}")
    if truth.size and (truth.min() < 0 or truth.max() >= k or pred.min() < 0 or pred.max() >= k):
        raise InputError(f"class indices must lie in 0..{k - 1}")
    return np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)


def decision_confusion(y_true, probabilities, rule: str = "argmax", penalty=None) -> np.ndarray:
    """Confusion counts when calls are made from the probabilities by `rule` (pure function)."""
    probs = np.asarray(probabilities, dtype=float)
    return confusion_counts(y_true, decide(probs, rule, penalty), probs.shape[1])


@dataclass(frozen=True)
class DecisionComparison:
    """Weighted error and confusion under argmax vs the penalty-minimising rule, on the same images."""

    argmax_confusion: np.ndarray
    min_penalty_confusion: np.ndarray
    argmax_weighted_error: float
    min_penalty_weighted_error: float
    changed_calls: int

    @property
    def improvement(self) -> float:
        """How much lower the weighted error is with the penalty-minimising rule (positive = better)."""
        return self.argmax_weighted_error - self.min_penalty_weighted_error


def compare_decision_rules(y_true, probabilities, penalty) -> DecisionComparison:
    """Show how the weighted error changes when calls minimise the expected penalty instead of argmax."""
    probs = np.asarray(probabilities, dtype=float)
    k = probs.shape[1]
    argmax_calls = decide(probs, "argmax")
    bayes_calls = decide(probs, "min_penalty", penalty)
    conf_argmax = confusion_counts(y_true, argmax_calls, k)
    conf_bayes = confusion_counts(y_true, bayes_calls, k)
    return DecisionComparison(conf_argmax, conf_bayes, weighted_error(conf_argmax, penalty),
                              weighted_error(conf_bayes, penalty), int(np.count_nonzero(argmax_calls != bayes_calls)))


def load_penalty_matrix(path: str | Path, classes) -> np.ndarray:
    """Read a penalty matrix file and return it in `classes` order (rows = true, columns = predicted).

    Accepted: JSON, either a list of rows in class order, {"classes": [...], "matrix": [[...]]}, or
    {"TRUE": {"PRED": penalty}}; CSV with a header row of predicted class names and the true class
    name in the first column, or plain rows of numbers in class order.
    """
    path = Path(path)
    classes = [str(c) for c in classes]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read penalty matrix ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: penalty matrix must be a text file (JSON or CSV)") from None
    source = str(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON: {exc}") from None
        matrix = _from_json(data, classes, source)
    else:
        matrix = _from_csv(text, classes, source)
    # A file is a deliberate choice, so what the page only warns about (it is edited cell by cell) is refused.
    problem = penalty_problem(matrix)
    if problem:
        raise InputError(f"{path}: the penalty matrix {problem}")
    return matrix


def _from_json(data, classes: list[str], source: str) -> np.ndarray:
    if isinstance(data, list):
        return check_penalty_matrix(data, len(classes), source)
    if isinstance(data, dict) and "matrix" in data:
        order = [str(c) for c in data.get("classes") or classes]
        return _reorder(check_penalty_matrix(data["matrix"], len(order), source), order, classes, source)
    if isinstance(data, dict):
        try:
            rows = [[data[t][p] for p in classes] for t in classes]
        except (KeyError, TypeError) as exc:
            raise InputError(f"{source}: mapping form needs every true/predicted class pair; missing {exc}") from None
        return check_penalty_matrix(rows, len(classes), source)
    raise InputError(f"{source}: expected a list of rows or an object with 'matrix'")


def _from_csv(text: str, classes: list[str], source: str) -> np.ndarray:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{source}: the penalty matrix file is empty")
    try:
        numbers = [[float(cell) for cell in r] for r in rows]
        return check_penalty_matrix(numbers, len(classes), source)
    except ValueError:
        pass  # has class-name headers; handled below
    header = [c.strip() for c in rows[0][1:]]
    row_names = [r[0].strip() for r in rows[1:]]
    try:
        body = [[float(cell) for cell in r[1:]] for r in rows[1:]]
    except ValueError:
        raise InputError(f"{source}: penalty entries must be numbers (header row and first column = class names)") \
            from None
    matrix = check_penalty_matrix(body, len(classes), source)
    if sorted(header) != sorted(row_names):
        raise InputError(f"{source}: row names {row_names} and column names {header} must be the same classes")
    return _reorder(matrix, header, classes, source, row_order=row_names)


def _reorder(matrix: np.ndarray, order: list[str], classes: list[str], source: str,
             row_order: list[str] | None = None) -> np.ndarray:
    row_order = row_order or order
    if sorted(order) != sorted(classes):
        raise InputError(f"{source}: classes {order} do not match the task's classes {classes}")
    cols = [order.index(c) for c in classes]
    rows = [row_order.index(c) for c in classes]
    return matrix[np.ix_(rows, cols)]
