"""core.data.ingest: uploads land under generated names, get registered, and failures leave nothing behind."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data.ingest import ingest_upload, load_registered, register_folder, register_split
from core.data.readers.manifest import FORMAT as MANIFEST_FORMAT
from core.errors import InputError
from tests._data_files import image_folder, truncate, write_image

LAYOUT = {"CNV": 2, "NORMAL": 3}


def _zip_bytes(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _uploads(ws) -> list[Path]:
    return sorted(ws.uploads_dir.iterdir())


@pytest.fixture
def folder(tmp_path):
    return image_folder(tmp_path / "src", LAYOUT)


def test_zip_upload_is_stored_under_a_generated_name_and_registered(workspace, folder):
    result = ingest_upload(workspace, "../../My scans (v2).zip", _zip_bytes(folder), task="oct-kermany")
    assert not result.reused and result.record["role"] == "test_set"
    assert result.record["n_images"] == 5 and result.record["task"] == "oct-kermany"
    source = Path(result.record["source"])
    assert source.is_relative_to(workspace.uploads_dir.resolve())
    (upload_dir,) = _uploads(workspace)
    assert upload_dir.name.startswith("upload-") and " " not in upload_dir.name and "(" not in upload_dir.name
    assert not list(upload_dir.glob("*.zip"))  # extracted; the archive itself is not kept twice
    assert result.record["meta"]["uploaded_as"] == "../../My scans (v2).zip"
    assert result.record["name"] == "My scans (v2).zip"
    again = load_registered(workspace, result.dataset_id)
    assert again.fingerprint == result.dataset.fingerprint
    assert dict(again.class_counts().sum()) == {"CNV": 2, "DME": 0, "DRUSEN": 0, "NORMAL": 3}


def test_same_upload_twice_is_reused_without_a_second_copy(workspace, folder):
    data = _zip_bytes(folder)
    first = ingest_upload(workspace, "a.zip", data)
    second = ingest_upload(workspace, "b.zip", data)
    assert second.reused and second.dataset_id == first.dataset_id
    assert len(_uploads(workspace)) == 1 and len(workspace.list_datasets()) == 1


@pytest.mark.parametrize("name, data", [
    ("evil.zip", None),                        # an entry escaping with '..'
    ("broken.zip", b"PK\x03\x04 this is not really a zip"),
    ("empty.zip", b""),
])
def test_hostile_or_broken_zip_registers_nothing(workspace, folder, tmp_path, name, data):
    if data is None:
        data = _zip_bytes(folder, {"../escaped.txt": b"x"})
    with pytest.raises(InputError):
        ingest_upload(workspace, name, data)
    assert workspace.list_datasets() == []
    assert _uploads(workspace) == []
    assert not (workspace.root / "escaped.txt").exists() and not (workspace.uploads_dir.parent / "escaped.txt").exists()


def test_bad_image_fails_strictly_and_is_listed_with_skip_bad(workspace, folder):
    truncate(write_image(folder / "NORMAL" / "NORMAL-9-1.png", seed=99), keep=0.3)
    data = _zip_bytes(folder)
    with pytest.raises(InputError, match="problem") as info:
        ingest_upload(workspace, "scans.zip", data)
    # Named as the user sent it, in words: no server path, no parameter name.
    assert "scans.zip/NORMAL/NORMAL-9-1.png" in str(info.value), str(info.value)
    assert str(workspace.root) not in str(info.value) and "skip_bad" not in str(info.value)
    assert workspace.list_datasets() == [] and _uploads(workspace) == []
    result = ingest_upload(workspace, "scans.zip", data, skip_bad=True)
    meta = result.record["meta"]
    assert result.record["n_images"] == 5 and meta["skip_bad"] and meta["n_problems"] == 1
    assert "NORMAL-9-1.png" in meta["problems"][0]
    assert len(load_registered(workspace, result.dataset_id)) == 5  # reloads with the same skip_bad


def test_csv_alone_is_explained_and_leaves_nothing(workspace):
    csv = b"path,label\nCNV/a.png,CNV\nNORMAL/b.png,NORMAL\n"
    with pytest.raises(InputError) as info:
        ingest_upload(workspace, "manifest.csv", csv)
    assert MANIFEST_FORMAT.alone_hint in str(info.value)
    assert workspace.list_datasets() == [] and _uploads(workspace) == []


def test_csv_may_not_reach_outside_the_upload(workspace, folder):
    outside = folder / "CNV" / "CNV-0-1.png"
    with pytest.raises(InputError, match="outside"):
        ingest_upload(workspace, "m.csv", f"path,label\n{outside},CNV\n{outside},NORMAL\n".encode())
    assert workspace.list_datasets() == []


def test_zip_with_images_and_csv_manifest(workspace, tmp_path):
    src = tmp_path / "manifest_src"
    for i, label in enumerate(["NORMAL", "CNV", "NORMAL", "DME"]):
        write_image(src / "images" / f"img{i}.png", seed=i)
    rows = "".join(f"images/img{i}.png,{lab},P{i}\n" for i, lab in enumerate(["NORMAL", "CNV", "NORMAL", "DME"]))
    (src / "labels.csv").write_text("path,label,patient_id\n" + rows)
    result = ingest_upload(workspace, "with_manifest.zip", _zip_bytes(src), task="oct-kermany")
    assert result.record["n_images"] == 4
    assert set(result.dataset.table["patient_id"]) == {"P0", "P1", "P2", "P3"}


def test_medmnist_npz_with_a_custom_task_reloads(workspace):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
             train_labels=np.array([[0], [1], [2], [0], [1], [2]]),
             test_images=rng.integers(0, 255, (3, 28, 28), dtype=np.uint8), test_labels=np.array([[0], [1], [2]]))
    result = ingest_upload(workspace, "tiny.npz", buf.getvalue(), role="dataset")
    assert result.record["role"] == "dataset" and result.record["n_images"] == 9
    assert result.record["task"].startswith("custom-")
    reloaded = load_registered(workspace, result.dataset_id)  # custom task comes from the saved definition
    assert reloaded.task.classes == ("0", "1", "2") and len(reloaded) == 9
    test_split = register_split(workspace, result.dataset_id, "test")
    assert test_split.record["role"] == "test_set" and test_split.record["n_images"] == 3
    assert len(load_registered(workspace, test_split.dataset_id)) == 3
    assert register_split(workspace, result.dataset_id, "test").reused


def test_unsupported_type_is_refused_before_writing(workspace):
    with pytest.raises(InputError, match="unsupported upload type"):
        ingest_upload(workspace, "notes.txt", b"hello")
    assert _uploads(workspace) == []


def test_register_server_folder(workspace, folder, tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        register_folder(workspace, tmp_path / "missing")
    with pytest.raises(InputError, match="not a folder"):
        register_folder(workspace, folder / "CNV" / "CNV-0-1.png")
    with pytest.raises(InputError):
        register_folder(workspace, "  ")
    result = register_folder(workspace, str(folder), task="oct-kermany", name="Clinic A")
    assert result.record["name"] == "Clinic A" and Path(result.record["source"]) == folder.resolve()
    assert _uploads(workspace) == []  # read in place, nothing copied
    assert register_folder(workspace, folder, task="oct-kermany").reused


def test_a_broken_image_in_a_server_folder_is_named_from_the_folder_not_by_its_server_path(workspace, tmp_path,
                                                                                          monkeypatch):
    """Issue 22: server paths showed to dashboard users in messages. A broken image in a server folder a researcher
    registers is named from the dataset's own folder ("clinic/NORMAL/x.png"): when it is refused, in the problems a
    skip-bad registration keeps, and when an image of the registered set breaks later (inference, maps)."""
    from core.store.access import RESEARCHER, Actor

    roots = tmp_path / "srv" / "data"
    folder = image_folder(roots / "clinic", LAYOUT)
    monkeypatch.setenv("CORE_DATA_ROOTS", str(roots))
    researcher = Actor("rita", RESEARCHER)
    broken = truncate(write_image(folder / "NORMAL" / "NORMAL-9-1.png", seed=99), keep=0.3)

    def named_from_the_folder(message: str, image: str) -> None:
        assert f"clinic/{image}" in message, message
        assert str(tmp_path) not in message and str(tmp_path.resolve()) not in message, message

    with pytest.raises(InputError, match="problem") as info:
        register_folder(workspace, folder, task="oct-kermany", actor=researcher)
    named_from_the_folder(str(info.value), "NORMAL/NORMAL-9-1.png")
    kept = register_folder(workspace, folder, task="oct-kermany", skip_bad=True, actor=researcher)
    named_from_the_folder(kept.record["meta"]["problems"][0], "NORMAL/NORMAL-9-1.png")

    broken.unlink()
    result = register_folder(workspace, folder, task="oct-kermany", actor=researcher)
    ds = load_registered(workspace, result.dataset_id)
    truncate(folder / "CNV" / "CNV-0-1.png", keep=0.3)  # damaged after it was registered and read
    with pytest.raises(InputError) as info:
        ds.image_by_id("CNV/CNV-0-1.png")
    named_from_the_folder(str(info.value), "CNV/CNV-0-1.png")
