"""core.data.archive and zip loading: hostile entries and bombs are refused, nothing half-written stays."""

from __future__ import annotations

import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from core.data import load_dataset
from core.data.archive import MARKER, check_zip, extract_zip, file_sha256
from core.errors import InputError
from tests._data_files import image_folder, write_image


def _zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
    return zip_path


def _hostile_zip(path: Path, name: str, data: bytes = b"x", attr: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if attr is not None:
            info.external_attr = attr << 16
        zf.writestr(info, data)
    return path


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_zip_of_image_folder_loads_and_is_reused(tmp_path):
    src = image_folder(tmp_path / "src", {"cats": 2, "dogs": 3})
    z = _zip_folder(src, tmp_path / "pets.zip", prefix="pets/")  # a wrapper folder inside the zip
    target = tmp_path / "out" / "pets"
    ds = load_dataset(z, extract_to=target)
    assert len(ds) == 5 and ds.task.classes == ("cats", "dogs")
    assert ds.source == str(z.resolve())
    assert all(Path(p).resolve().is_relative_to(target) for p in ds.table["path"])
    assert (target / MARKER).read_text() == file_sha256(z)
    stamp = (target / "pets" / "cats").stat().st_mtime_ns
    again = load_dataset(z, extract_to=target)
    assert again.table["path"].tolist() == ds.table["path"].tolist()
    assert (target / "pets" / "cats").stat().st_mtime_ns == stamp  # reused, not re-extracted
    assert _leftovers(target.parent) == ["pets"]


def test_default_target_is_in_workspace_uploads(tmp_path, workspace):
    src = image_folder(tmp_path / "src", {"a": 1, "b": 1})
    z = _zip_folder(src, tmp_path / "scans.zip")
    ds = load_dataset(z)
    expected = workspace.uploads_dir / f"scans-{file_sha256(z)[:8]}"
    assert ds.root == str(expected)
    assert expected.is_dir() and len(ds) == 2


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil-abs.txt", "C:/evil.txt",
                                  "..\\evil.txt"])
def test_entries_escaping_the_target_are_refused(tmp_path, name):
    z = _hostile_zip(tmp_path / "bad.zip", name)
    out = tmp_path / "x" / "target"
    with pytest.raises(InputError, match=r"bad\.zip.*(absolute|outside)"):
        extract_zip(z, out)
    assert _leftovers(out.parent) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-abs.txt").exists()


def test_symlink_entries_are_refused(tmp_path):
    z = _hostile_zip(tmp_path / "link.zip", "ok/link", data=b"/etc/passwd", attr=stat.S_IFLNK | 0o777)
    with pytest.raises(InputError, match="symbolic link"):
        extract_zip(z, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_uncompressed_size_limit_checked_before_extracting(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/zeros.png", b"\0" * 3_000_000)
    assert z.stat().st_size < 20_000  # highly compressed
    with pytest.raises(InputError, match=r"bomb\.zip.*expands to more than 1,000,000 bytes"):
        load_dataset(z, extract_to=tmp_path / "t", max_archive_bytes=1_000_000)
    assert _leftovers(tmp_path / "t") == [] and not (tmp_path / "t").exists()


def test_size_lies_are_caught_while_streaming_and_partial_folder_removed(tmp_path):
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/first.txt", b"hello")
        zf.writestr("a/zeros.bin", b"\0" * 2_000_000)
    data = bytearray(z.read_bytes())
    # Rewrite the central directory's uncompressed size of the second entry to claim 10 bytes.
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    assert sum(i.file_size for i in zipfile.ZipFile(z).infolist()) < 100
    with pytest.raises(InputError, match=r"liar\.zip"):
        extract_zip(z, tmp_path / "out" / "t", max_total_bytes=1000)
    assert _leftovers(tmp_path / "out") == []  # the temp folder with first.txt is gone


def test_entry_count_limit(tmp_path):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(12):
            zf.writestr(f"f{i}.png", b"1")
    with pytest.raises(InputError, match=r"12 entries.*limit of 10"):
        check_zip(z, max_entries=10)
    assert len(check_zip(z, max_entries=12)) == 12


def test_duplicate_entries_refused(tmp_path):
    z = tmp_path / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we create on purpose
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("a/x.png", b"1")
            zf.writestr("a/x.png", b"2")
    with pytest.raises(InputError, match="appears twice"):
        check_zip(z)


def test_not_a_zip_and_empty_zip(tmp_path):
    bad = tmp_path / "junk.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match=r"junk\.zip.*not a readable zip"):
        load_dataset(bad, extract_to=tmp_path / "t")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("__MACOSX/._x", b"")
    with pytest.raises(InputError, match="no dataset files"):
        extract_zip(empty, tmp_path / "t2")


def test_macos_litter_is_ignored(tmp_path):
    src = image_folder(tmp_path / "src", {"a": 1, "b": 1})
    z = _zip_folder(src, tmp_path / "mac.zip")
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("__MACOSX/a/._a-0-1.png", b"resource fork")
        zf.writestr("a/.DS_Store", b"finder")
    out = extract_zip(z, tmp_path / "t")
    assert not (out / "__MACOSX").exists() and not (out / "a" / ".DS_Store").exists()
    assert len(load_dataset(z, extract_to=tmp_path / "t")) == 2


def test_existing_foreign_target_is_not_overwritten(tmp_path):
    src = image_folder(tmp_path / "src", {"a": 1, "b": 1})
    z = _zip_folder(src, tmp_path / "d.zip")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        extract_zip(z, target)
    assert (target / "precious.txt").read_text() == "keep me"


def test_bad_image_inside_zip_fails_cleanly(tmp_path):
    src = image_folder(tmp_path / "src", {"a": 1, "b": 1})
    (src / "b" / "broken.png").write_text("nope")
    z = _zip_folder(src, tmp_path / "d.zip")
    with pytest.raises(InputError, match=r"broken\.png"):
        load_dataset(z, extract_to=tmp_path / "t")
    ds = load_dataset(z, extract_to=tmp_path / "t", skip_bad=True)
    assert len(ds) == 2 and len(ds.problems) == 1 and "broken.png" in ds.problems[0]


def test_folder_extracted_from_a_zip_stays_confined_when_read_again(tmp_path, monkeypatch):
    """An upload's extracted folder, read again as a folder (a registered upload reloaded), is still confined to
    itself: not even a data root widens it."""
    secret = write_image(tmp_path / "private" / "patient.png", seed=7)
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("manifest.csv", f"path,label\na.png,a\nb.png,b\n{secret},b\n")
        zf.write(write_image(tmp_path / "a.png", seed=1), "a.png")
        zf.write(write_image(tmp_path / "b.png", seed=2), "b.png")
    monkeypatch.setenv("CORE_DATA_ROOTS", str(tmp_path / "private"))
    first = load_dataset(z, extract_to=tmp_path / "t", skip_bad=True)
    again = load_dataset(tmp_path / "t", skip_bad=True)
    assert sorted(again.table["image_id"]) == sorted(first.table["image_id"]) == ["a.png", "b.png"]
    with pytest.raises(InputError, match=r"line 4 \('.*patient\.png'\)\. Refused: a manifest in an upload may name "
                                         r"only files inside the upload's own folder"):
        load_dataset(tmp_path / "t")
