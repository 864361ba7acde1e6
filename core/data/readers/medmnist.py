"""MedMNIST .npz files: {train,val,test}_images and _labels arrays; rows point into the arrays."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.dataset import Dataset
from core.data.images import npz_ref
from core.data.readers.common import ProblemLog, finish
from core.data.readers.registry import DatasetFormat, example_pixels
from core.data.tasks import MAX_CLASSES, BinaryView, Task, get_task
from core.errors import InputError

SPLITS = ("train", "val", "test")

# PneumoniaMNIST (derived from Kermany's chest X-rays) labels 0 = normal, 1 = pneumonia.
PNEUMONIA_BINARY = Task(
    name="pneumonia-binary",
    title="Pediatric chest X-ray: pneumonia vs normal (binary)",
    modality="X-ray",
    kind="binary",
    classes=("NORMAL", "PNEUMONIA"),
    referral_level=(("NORMAL", "observation"), ("PNEUMONIA", "urgent")),
    binary_views=(BinaryView("pneumonia vs normal", ("PNEUMONIA",), ("NORMAL",)),),
    description="Pneumonia vs normal, as in PneumoniaMNIST (0 = normal, 1 = pneumonia).",
)


def _preset_for(npz_path: Path) -> Task | None:
    name = npz_path.name.lower()
    if name.startswith("retinamnist"):
        return get_task("dr-grading")
    if name.startswith("pneumoniamnist"):
        return PNEUMONIA_BINARY
    return None


def _array_header(npz_path: Path, key: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype from the .npy header inside the zip, checked against the bytes actually stored.

    MedMNIST+ files hold gigabytes of pixels, so nothing is read beyond the header; a header claiming more
    rows than the entry holds (or the reverse) is refused before any row is allocated from it.
    """
    with zipfile.ZipFile(npz_path) as zf:
        stored = zf.getinfo(f"{key}.npy").file_size
        with zf.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
            header_bytes = f.tell()
    if dtype.hasobject:
        raise InputError(f"{npz_path}: {key} holds Python objects; only plain numeric arrays are read")
    if any(int(d) < 0 for d in shape) or int(np.prod(shape, dtype=object)) * dtype.itemsize != stored - header_bytes:
        raise InputError(f"{npz_path}: {key} claims shape {tuple(shape)} of {dtype}, which does not match "
                         f"the {stored - header_bytes:,} bytes stored (damaged or hand-edited file)")
    return tuple(int(d) for d in shape), dtype


def _check_labels_header(npz_path: Path, key: str, shape: tuple, dtype: np.dtype, n_images: int) -> None:
    """Bound the labels array from its header before loading it: numeric, one row per image, <= MAX_CLASSES wide."""
    if dtype.kind not in "biuf" or not shape:
        raise InputError(f"{npz_path}: {key} holds {dtype} values of shape {shape}; labels must be an array of "
                         "numbers (class indices or 0/1)")
    rows = shape[0]
    width = int(np.prod(shape[1:], dtype=object)) if len(shape) > 1 else 1
    if rows != n_images:
        raise InputError(f"{npz_path}: {key} has {rows} rows for {n_images} images")
    if width > MAX_CLASSES:
        raise InputError(f"{npz_path}: {key} has {width:,} label columns, above the limit of {MAX_CLASSES}")


def _load_arrays(npz_path: Path) -> dict[str, tuple[tuple, np.dtype, np.ndarray]]:
    """Image shapes (not pixels: those are read on demand) and labels per split present."""
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            keys = set(data.files)
            out = {}
            for split in SPLITS:
                img_key, lab_key = f"{split}_images", f"{split}_labels"
                if img_key not in keys and lab_key not in keys:
                    continue
                if img_key not in keys or lab_key not in keys:
                    raise InputError(f"{npz_path}: has {img_key if img_key in keys else lab_key} "
                                     f"but not {lab_key if img_key in keys else img_key}")
                shape, dtype = _array_header(npz_path, img_key)
                if not shape or shape[0] == 0:
                    raise InputError(f"{npz_path}: {img_key} holds no images (shape {shape})")
                _check_labels_header(npz_path, lab_key, *_array_header(npz_path, lab_key), shape[0])
                out[split] = (shape, dtype, np.asarray(data[lab_key]))
    except InputError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{npz_path}: not a readable .npz file ({exc})") from None
    if not out:
        raise InputError(f"{npz_path}: no MedMNIST arrays; expected train_images/train_labels "
                         f"(and val_*, test_*), found {sorted(keys)}")
    return out


def read_medmnist(npz_path: Path, task: Task | str | None, *, skip_bad: bool, max_pixels: int,
                  source: str) -> Dataset:
    """Labels (n, 1) are class indices (multiclass); (n, k) with k > 1 are k 0/1 labels (multi-label)."""
    npz_path = npz_path.resolve()
    arrays = _load_arrays(npz_path)
    widths = set()
    for split, (shape, dtype, labels) in arrays.items():
        ok_shape = len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))
        if not ok_shape:
            raise InputError(f"{npz_path}: {split}_images has shape {shape}; expected (n, H, W) or (n, H, W, 3) "
                             "(3-D volumes are not supported)")
        if not np.issubdtype(dtype, np.integer):
            raise InputError(f"{npz_path}: {split}_images must hold integer pixels, not {dtype}")
        if min(shape[1:3]) < 1:
            raise InputError(f"{npz_path}: {split}_images has shape {shape}: images of no pixels")
        if shape[1] * shape[2] > max_pixels:
            raise InputError(f"{npz_path}: {split} images are {shape[2]}x{shape[1]}, above the pixel limit")
        labels = labels.reshape(len(labels), -1) if labels.ndim != 2 else labels
        if labels.ndim != 2 or len(labels) != shape[0]:
            raise InputError(f"{npz_path}: {split}_labels has {len(labels)} rows for {shape[0]} images")
        if not np.issubdtype(labels.dtype, np.integer) and not (
                np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
            raise InputError(f"{npz_path}: {split}_labels must hold whole numbers")
        if labels.min() < 0 or (labels.shape[1] == 1 and labels.max() >= MAX_CLASSES):
            raise InputError(f"{npz_path}: {split}_labels hold values {labels.min():g}..{labels.max():g}; "
                             f"class indices must lie in 0..{MAX_CLASSES - 1}")
        arrays[split] = (shape, dtype, labels.astype(np.int64))
        widths.add(labels.shape[1])
    if len(widths) != 1:
        raise InputError(f"{npz_path}: label arrays differ in width between splits ({sorted(widths)})")
    width = widths.pop()
    task_obj = get_task(task) if task is not None else _preset_for(npz_path)
    multilabel = width > 1
    if task_obj is None:
        if multilabel:
            task_obj = Task(name=f"custom-{npz_path.stem.lower()}", title=f"Custom task ({npz_path.name})",
                            modality="other", kind="multilabel", classes=tuple(str(i) for i in range(width)))
        else:
            top = max(int(lab.max()) for _, _, lab in arrays.values()) + 1
            task_obj = Task(name=f"custom-{npz_path.stem.lower()}", title=f"Custom task ({npz_path.name})",
                            modality="other", kind="multiclass", classes=tuple(str(i) for i in range(max(top, 2))))
    if multilabel != (task_obj.kind == "multilabel") or (multilabel and width != len(task_obj.classes)):
        raise InputError(f"{npz_path}: labels have {width} column(s), which does not fit task {task_obj.name!r} "
                         f"({task_obj.kind}, {len(task_obj.classes)} classes)")
    frames = []
    for split, (shape, _, labels) in arrays.items():
        n = shape[0]
        frame = pd.DataFrame({
            "image_id": [f"{split}/{i}" for i in range(n)],
            "path": [npz_ref(npz_path, split, i) for i in range(n)],
            "patient_id": None,
            "split": split,
        })
        if multilabel:
            if not np.isin(labels, (0, 1)).all():
                raise InputError(f"{npz_path}: {split}_labels must hold only 0/1 for multi-label data")
            for j, cls in enumerate(task_obj.classes):
                frame[cls] = labels[:, j]
            frame["label"] = ""
        else:
            idx = labels[:, 0]
            if idx.min() < 0 or idx.max() >= len(task_obj.classes):
                raise InputError(f"{npz_path}: {split}_labels hold values {int(idx.min())}..{int(idx.max())}, "
                                 f"outside the {len(task_obj.classes)} classes of task {task_obj.name!r}")
            frame["label"] = np.asarray(task_obj.classes, dtype=object)[idx]
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    # Arrays need no per-image check: their shape and dtype were validated above.
    return finish(table, task_obj, source, ProblemLog(source, skip_bad), str(npz_path.parent), max_pixels,
                  check=False)


# -- the format ---------------------------------------------------------------------------------------------
def _one_npz(scan) -> Path | None:
    npz = scan.files_with_suffix(".npz")
    if len(npz) > 1:
        scan.problems.append(InputError(f"{scan.root}: several .npz files ({', '.join(f.name for f in npz)}); "
                                        "give the one to use"))
    return npz[0] if len(npz) == 1 else None


def _read(path: Path, task, options) -> Dataset:
    return read_medmnist(path, task, skip_bad=options.skip_bad, max_pixels=options.max_pixels,
                         source=options.source)


def write_example(folder: Path, task: Task) -> None:
    """The format's tiny example: folder/example.npz, every image in its train split, labels as class indices."""
    images = example_pixels(task)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "example.npz", train_images=np.stack([pixels for _, _, pixels in images]),
             train_labels=np.array([[task.classes.index(label)] for label, _, _ in images]))


FORMAT = DatasetFormat(name="medmnist", file_description="a MedMNIST .npz", folder_description="a MedMNIST .npz",
                       read=_read, suffixes=(".npz",), detectors=((30, _one_npz),), example=write_example)
