"""Adding data to a workspace: uploads saved under generated names, server folders, registered splits.

All or nothing: an upload is written to a fresh folder in the workspace's uploads folder, loaded with
core.data.load_dataset and only then registered; on any failure that folder is removed and the registry is
left as it was."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from core.data.archive import extract_zip
from core.data.dataset import Dataset
from core.data.dicom import BURNED_IN_REFUSED, DicomOptions, dicom_fields, is_dicom, workspace_key
from core.data.dicom_upload import deidentify_tree
from core.data.loading import load_dataset
from core.data.readers import read_path, upload_types
from core.data.readers.registry import file_types_text, format_for_file
from core.data.shown import dataset_folder, within_folder
from core.data.tasks import Task, get_task, list_tasks, task_from_dict
from core.errors import InputError, StorageError, storage_error
from core.store import Workspace, audit_trail
from core.store.access import SHELL, Actor, check_server_folder, require
from core.store.secret import patient_key
from core.store.workspace import new_id

UPLOAD_TYPES = upload_types()  # "zip" and every single-file format that may be uploaded alone
MAX_PROBLEMS_KEPT = 200  # the registry keeps this many problem lines; the count is kept in full


@dataclass(frozen=True)
class Ingested:
    """The outcome of adding data: its registry id and row, the loaded Dataset, and whether the same content
    was already registered (then nothing new was written)."""

    dataset_id: str
    record: dict
    dataset: Dataset
    reused: bool


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32]


def _task_arg(task: Task | str | None) -> Task | str | None:
    return None if task in (None, "", "auto") else task


def _register(ws: Workspace, ds: Dataset, *, name: str, source: Path, role: str, skip_bad: bool,
              extra_meta: dict) -> Ingested:
    """Register `ds`, unless the same content is already registered with this role and task."""
    for row in ws.list_datasets(role=role):
        if row["fingerprint"] == ds.fingerprint and row["task"] == ds.task.name:
            return Ingested(row["id"], row, ds, reused=True)
    meta = {"task_definition": ds.task.to_dict(), "skip_bad": bool(skip_bad), "n_problems": len(ds.problems),
            "problems": ds.problems[:MAX_PROBLEMS_KEPT], "splits": ds.splits(),
            "synthetic": False, **({"dicom": ds.dicom.to_dict()} if ds.dicom else {}), **extra_meta}
    dataset_id = ws.register_dataset(name=name, source=str(source), task=ds.task.name, fingerprint=ds.fingerprint,
                                     n_images=len(ds), role=role, meta=meta)
    return Ingested(dataset_id, ws.get_dataset(dataset_id), ds, reused=False)


def _save(data: bytes | BinaryIO, target: Path) -> None:
    with open(target, "xb") as out:
        if isinstance(data, (bytes, bytearray, memoryview)):
            out.write(data)
        else:
            if hasattr(data, "seek"):
                data.seek(0)
            shutil.copyfileobj(data, out, length=1 << 20)


def ingest_upload(ws: Workspace, file_name: str, data: bytes | BinaryIO, *, role: str = "test_set",
                  task: Task | str | None = None, name: str | None = None, skip_bad: bool = False,
                  dicom: DicomOptions | None = None, actor: Actor = SHELL) -> Ingested:
    """Store an uploaded zip / CSV manifest / MedMNIST .npz in the workspace and register it.

    The user's file name is used for its extension and as a display name only: the bytes go to
    uploads/upload-<time>-<slug>-<random>/ under a generated name. A zip is extracted (safely) next to it
    and the extracted folder is what gets registered; DICOM files in it are rewritten de-identified first
    (core.data.dicom_upload.deidentify_tree: PS3.15 basic profile, PatientID and UIDs pseudonymised with the workspace's
    key, each file named by its new SOP Instance UID; files with burned-in annotation refused unless
    dicom.burned_in == "keep"). On any error everything written is removed."""
    require(actor, "register_dataset")
    suffix = PurePath(str(file_name)).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise InputError(f"{file_name}: unsupported upload type {('.' + suffix) if suffix else '(none)'}; "
                         f"upload a .zip (class folders, or images + CSV), {file_types_text()}")
    stem = _slug(PurePath(str(file_name)).stem) or "upload"
    folder = ws.uploads_dir / new_id("upload", stem)
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise storage_error(exc, ws.root, f"storing the upload {file_name!r}") from None
    # The stem is kept (slugged) because readers recognise some files by name (e.g. pneumoniamnist*.npz).
    saved = folder / f"{stem}.{suffix}"
    try:
        try:
            _save(data, saved)
        except OSError as exc:
            raise storage_error(exc, ws.root, f"storing the upload {file_name!r} in {ws.uploads_dir}") from None
        task_arg = _task_arg(task)
        extra_meta = {}
        if suffix == "zip":
            extracted = folder / "data"
            extract_zip(saved, extracted)
            key = patient_key(ws.root)
            done = deidentify_tree(extracted, key, skip_bad=skip_bad, options=dicom)
            with workspace_key(key):
                ds = load_dataset(saved, task_arg, skip_bad=skip_bad, extract_to=extracted, dicom=dicom)
            ds.problems.extend(done.problems)
            if done.burned_in:
                extra_meta["burned_in_annotation"] = _burned_in_ids(ds, set(done.burned_in), extracted)
            saved.unlink()  # the extracted folder is the data from now on
            source = extracted
        else:
            hint = format_for_file(saved).alone_hint
            try:
                # confined: an uploaded manifest may not point at files elsewhere on this machine.
                ds = read_path(saved, task_arg, skip_bad=skip_bad, confined=True)
            except InputError as exc:
                if not hint:
                    raise
                raise InputError(f"{exc} {hint}") from None
            source = saved
        ds.problems = [_as_uploaded(problem, (folder / "data", saved), str(file_name)) for problem in ds.problems]
        result = _register(ws, ds, name=(name or PurePath(str(file_name)).name).strip(), source=source, role=role,
                           skip_bad=skip_bad, extra_meta={"uploaded_as": str(file_name), "format": suffix,
                                                          **extra_meta})
    except StorageError:  # about the workspace's disk, not the upload: its paths are the point
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except InputError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(_as_uploaded(str(exc), (folder / "data", saved), str(file_name))) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if result.reused:
        shutil.rmtree(folder, ignore_errors=True)  # same content already registered: keep no second copy
    audit_trail.record(ws, actor, "dataset_uploaded", f"{role} {result.dataset_id}",
                       {"file": str(file_name), "reused": result.reused})
    return result


def register_folder(ws: Workspace, folder: str | Path, *, role: str = "test_set", task: Task | str | None = None,
                    name: str | None = None, skip_bad: bool = False, dicom: DicomOptions | None = None,
                    actor: Actor = SHELL) -> Ingested:
    """Register a dataset folder that already lives on this server (read in place, nothing copied). Dashboard
    users may register only folders under the configured data roots (core/store/access.py)."""
    text = str(folder or "").strip()
    if not text:
        raise InputError("folder path: enter the path of a folder on the server")
    path = Path(text).expanduser()
    check_server_folder(ws, path, actor=actor)  # before looking: outside the roots, not even whether it exists
    if not path.exists():
        raise InputError(f"{path}: no such folder on the server")
    if not path.is_dir():
        raise InputError(f"{path}: is a file, not a folder; give the folder that holds the class folders "
                         "or the CSV manifest with its images")
    path = path.resolve()
    key = patient_key(ws.root)
    with workspace_key(key):
        ds = _load_named(path, None, _task_arg(task), skip_bad=skip_bad, dicom=dicom)
        burned = [(image_id, full) for image_id, full in zip(ds.table["image_id"], ds.table["path"])
                  if is_dicom(full) and dicom_fields(full, key)["burned_in"]]
    extra_meta = {"format": "folder"}
    if burned and (dicom or DicomOptions()).burned_in != "keep":
        # Read in place, so a file cannot be left out of the folder here: the folder is refused, naming them.
        shown = ", ".join(full for _, full in burned[:5]) + (f" and {len(burned) - 5} more" if len(burned) > 5 else "")
        raise InputError(within_folder(f"{len(burned)} DICOM file(s) in {path}: {shown}: {BURNED_IN_REFUSED} (move "
                                       "them out of the folder to add the rest)", path))
    if burned:
        extra_meta["burned_in_annotation"] = [image_id for image_id, _ in burned]
    result = _register(ws, ds, name=(name or path.name).strip(), source=path, role=role, skip_bad=skip_bad,
                       extra_meta=extra_meta)
    audit_trail.record(ws, actor, "dataset_registered", f"{role} {result.dataset_id}",
                       {"folder": str(path), "reused": result.reused})
    return result


def _burned_in_ids(ds: Dataset, stored: set[str], root: Path) -> list[str]:
    """The image ids of the files kept with burned-in annotation (`stored`: their paths relative to `root`)."""
    root = root.resolve()
    return [image_id for image_id, full in zip(ds.table["image_id"], ds.table["path"])
            if Path(full).resolve().is_relative_to(root)
            and Path(full).resolve().relative_to(root).as_posix() in stored]


def _as_uploaded(message: str, stored: tuple[Path, ...], file_name: str) -> str:
    """A problem in an upload named by the file the user sent ("clinic.zip/CNV/x.png"), not by the server
    paths it was stored under (longest first: the extracted folder, the saved file). The upload folder itself is
    left as it is: a message naming it is about the workspace (e.g. its free space), not about the upload."""
    for path in sorted((str(p) for p in stored), key=len, reverse=True):
        message = within_folder(message, path, file_name)
    return message


def _load_named(source: str | Path, label: str | None, task, **options) -> Dataset:
    """load_dataset(source, task, **options) whose error and problem lines name files from the dataset's own
    folder, called `label` (default its name): "chest/PNEUMONIA/x.png: ...", not the server path (core.data.shown)."""
    folder = dataset_folder(source)
    try:
        ds = load_dataset(source, task, **options)
    except InputError as exc:
        raise InputError(within_folder(str(exc), folder, label)) from None
    ds.problems = [within_folder(problem, folder, label) for problem in ds.problems]
    return ds


def register_split(ws: Workspace, dataset_id: str, split: str = "test", *, actor: Actor = SHELL) -> Ingested:
    """Register one split of a registered dataset (e.g. its test folder) as a test set of its own."""
    require(actor, "register_dataset")
    record = _record(ws, dataset_id)
    ds = load_registered(ws, dataset_id).split_named(split)
    result = _register(ws, ds, name=f"{record['name']} - {split} split", source=Path(record["source"]),
                       role="test_set", skip_bad=bool(record["meta"].get("skip_bad")),
                       extra_meta={"split": split, "parent_dataset": dataset_id,
                                   "synthetic": bool(record["meta"].get("synthetic"))})
    audit_trail.record(ws, actor, "dataset_registered", f"test_set {result.dataset_id}",
                       {"split_of": dataset_id, "split": split, "reused": result.reused})
    return result


def _record(ws: Workspace, dataset_id: str) -> dict:
    record = ws.get_dataset(dataset_id)
    if record is None:
        raise InputError(f"no dataset or test set with id {dataset_id!r} in workspace {ws.root}")
    return record


def registered_task(record: dict) -> Task:
    """The task a registered dataset was read with (presets by name; custom tasks from their saved definition)."""
    if record["task"] in list_tasks():
        return get_task(record["task"])
    definition = record["meta"].get("task_definition")
    if definition:
        return task_from_dict(definition, source=f"dataset {record['id']}")
    return get_task(record["task"])


def load_registered(ws: Workspace, dataset_id: str, skip_bad: bool | None = None) -> Dataset:
    """Load a registered dataset or test set as it was registered: same task, skip_bad setting (unless given:
    inference skips an image damaged since registration rather than failing the set) and split."""
    record = _record(ws, dataset_id)
    meta = record["meta"]
    skip = bool(meta.get("skip_bad")) if skip_bad is None else bool(skip_bad or meta.get("skip_bad"))
    # An extracted upload is named as the user sent it ("clinic.zip/CNV/x.png"), a server folder by its name.
    label = meta.get("uploaded_as") if meta.get("uploaded_as") and Path(record["source"]).is_dir() else None
    with workspace_key(patient_key(ws.root)):  # server folders' PatientIDs are hashed as they are read
        ds = _load_named(record["source"], label, registered_task(record), skip_bad=skip,
                         dicom=DicomOptions.from_dict(meta["dicom"]) if meta.get("dicom") else None)
    return ds.split_named(meta["split"]) if meta.get("split") else ds
