"""Safe zip extraction: no entry may escape the target, archives may not expand past set limits."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from core.data.dicom import may_be_unnamed_dicom
from core.data.images import is_image_name
from core.data.readers.common import EXTRACTED_MARKER as MARKER
from core.data.readers.registry import data_suffixes
from core.errors import STORAGE_ERRNOS, InputError, storage_error
from core.store.integrity import file_sha256  # noqa: F401  (the owner; archive's callers and tests use it from here)

# OCT2017 unzips to ~6 GB in ~84k files; these limits leave room for such datasets and stop bombs.
DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
DEFAULT_MAX_ENTRIES = 250_000
# Only what a dataset reader uses is extracted: images (DICOM too) and the files of every registered format
# (core.data.readers.registry.data_suffixes: CSV manifests and lesion-box tables, MedMNIST .npz ...).
# A bomb with honest headers: JPEG/PNG barely compress again in a zip (~1:1), raw TIFF/BMP/DICOM a few
# times. The archive may expand to MAX_EXPANSION_RATIO times its compressed bytes, or to IMAGE_ALLOWANCE
# bytes per image it holds (whichever is larger), so a small zip of highly compressible "images" is refused.
MAX_EXPANSION_RATIO = 100
IMAGE_ALLOWANCE = 4 * 1024**2
# Extraction must leave this share of the disk free (a full disk breaks the registry and every run).
MIN_FREE_FRACTION = 0.05
_CHUNK = 1 << 20




def _ignored(name: str) -> bool:
    # macOS resource forks and Finder litter ride along in zips made on a Mac; they are not data.
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1] in (".DS_Store", "Thumbs.db") or parts[-1].startswith("._")


def is_dataset_file(name: str) -> bool:
    """True for the files a dataset reader uses (images, each format's suffixes); the rest of an archive is not
    extracted."""
    return is_image_name(posixpath.basename(name)) or posixpath.splitext(name)[1].lower() in data_suffixes()


def _unnamed_dicom(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bool:
    """An entry named without a format (PACS exports: no extension, or a UID) whose bytes 128-131 are 'DICM'."""
    if not may_be_unnamed_dicom(name) or info.flag_bits & 0x1 or info.file_size < 132:
        return False
    try:
        with zf.open(info) as entry:
            head = entry.read(132)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, NotImplementedError):
        return False  # unreadable here: extraction would fail on it too, and it is not data we can tell
    return head[128:132] == b"DICM"


def _safe_name(zip_name: str, info: zipfile.ZipInfo) -> str:
    """The entry's relative posix path, or InputError when it could land outside the target."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InputError(f"{zip_name}: entry {raw!r} has an absolute path; refusing to extract")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InputError(f"{zip_name}: entry {raw!r} points outside the archive folder ('..'); refusing to extract")
    if "\x00" in name:
        raise InputError(f"{zip_name}: entry {raw!r} has a NUL byte in its name")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InputError(f"{zip_name}: entry {raw!r} is a symbolic link; refusing to extract")
    # Zips from some tools store permission bits only (no file type); those are plain files.
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InputError(f"{zip_name}: entry {raw!r} is not a regular file or folder")
    return posixpath.join(*parts) if parts else ""


def check_zip(zip_path: str | Path, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
              max_entries: int = DEFAULT_MAX_ENTRIES) -> list[tuple[zipfile.ZipInfo, str]]:
    """Validate every entry before anything is written; returns (info, safe relative name) for files."""
    zip_name = str(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return _checked_entries(zf, zip_name, max_total_bytes, max_entries)
    except FileNotFoundError:
        raise InputError(f"{zip_name}: file not found") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{zip_name}: not a readable zip archive ({exc})") from None


def _checked_entries(zf: zipfile.ZipFile, zip_name: str, max_total_bytes: int,
                     max_entries: int) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise InputError(f"{zip_name}: {len(infos):,} entries, above the limit of {max_entries:,}")
    files, seen, total, packed, n_images, skipped = [], set(), 0, 0, 0, 0
    for info in infos:
        name = _safe_name(zip_name, info)  # every entry is checked, also those not extracted
        if info.is_dir() or not name or _ignored(name):
            continue
        dicom = not is_dataset_file(name) and _unnamed_dicom(zf, info, name)
        if not (dicom or is_dataset_file(name)):
            skipped += 1
            continue
        if info.flag_bits & 0x1:
            raise InputError(f"{zip_name}: entry {info.filename!r} is encrypted; upload an unencrypted zip")
        if name in seen:
            raise InputError(f"{zip_name}: entry {info.filename!r} appears twice")
        seen.add(name)
        total += info.file_size
        packed += info.compress_size
        n_images += dicom or is_image_name(posixpath.basename(name))
        if total > max_total_bytes:
            raise InputError(f"{zip_name}: expands to more than {max_total_bytes:,} bytes (limit); refusing to extract")
        files.append((info, name))
    if not files:
        raise InputError(f"{zip_name}: the archive holds no dataset files (images, {', '.join(data_suffixes())})"
                         + (f"; {skipped} other file(s) were left out" if skipped else ""))
    allowed = max(MAX_EXPANSION_RATIO * packed, IMAGE_ALLOWANCE * n_images)
    if total > allowed:
        raise InputError(f"{zip_name}: {packed:,} compressed bytes would expand to {total:,} bytes "
                         f"({total / max(packed, 1):,.0f}:1) for {n_images:,} image(s); the limit is "
                         f"{MAX_EXPANSION_RATIO}:1 or {IMAGE_ALLOWANCE // 1024**2} MiB per image "
                         f"({allowed:,} bytes). Refusing to extract what looks like a zip bomb")
    return files


def _stream_entries(zip_path: Path, files: list, dest: Path, max_total_bytes: int) -> None:
    # Sizes in the central directory can lie, so count the bytes actually written as well.
    written = 0
    root = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info, name in files:
            out_path = (dest / name)
            if not out_path.resolve().is_relative_to(root):
                raise InputError(f"{zip_path}: entry {info.filename!r} resolves outside the target folder")
            out_path.parent.mkdir(parents=True, exist_ok=True)
            entry_bytes = 0
            with zf.open(info) as src, open(out_path, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    entry_bytes += len(chunk)
                    written += len(chunk)
                    if entry_bytes > info.file_size or written > max_total_bytes:
                        raise InputError(f"{zip_path}: entry {info.filename!r} expands beyond its declared size "
                                         f"or the {max_total_bytes:,}-byte limit; extraction stopped")
                    dst.write(chunk)


def extract_zip(zip_path: str | Path, target: str | Path | None = None, *,
                max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES) -> Path:
    """Extract `zip_path` safely and return the folder.

    Default target: the workspace uploads folder / "<zip stem>-<first 8 hex of its sha256>", so the
    same zip loaded again reuses its folder. Extraction goes to a temporary sibling folder that is
    renamed into place only when complete; on any failure it is removed and nothing half-written stays.
    """
    zip_path = Path(zip_path).expanduser()
    if not zip_path.is_file():
        raise InputError(f"{zip_path}: file not found")
    digest = file_sha256(zip_path)
    if target is None:
        from core.store import Workspace

        target = Workspace.open().uploads_dir / f"{zip_path.stem}-{digest[:8]}"
    target = Path(target).expanduser().resolve()
    marker = target / MARKER
    if target.exists():
        if marker.is_file() and marker.read_text().strip() == digest:
            return target
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        else:
            raise InputError(f"{target}: folder already exists and does not hold this zip's contents; "
                             "choose another extraction folder")
    files = check_zip(zip_path, max_total_bytes, max_entries)
    target.parent.mkdir(parents=True, exist_ok=True)
    needed = sum(info.file_size for info, _ in files)
    disk = shutil.disk_usage(target.parent)
    reserve = int(MIN_FREE_FRACTION * disk.total)
    if needed > disk.free - reserve:
        raise InputError(f"{zip_path}: extracting needs {needed:,} bytes; {target.parent} has {disk.free:,} free "
                         f"and {reserve:,} ({MIN_FREE_FRACTION:.0%} of the disk) must stay free")
    # The pid in the name lets `python -m core doctor` (and startup) remove it once this process is gone.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    try:
        _stream_entries(zip_path, files, tmp, max_total_bytes)
        (tmp / MARKER).write_text(digest)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same zip first: use its folder if it is the same content.
            if marker.is_file() and marker.read_text().strip() == digest:
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            raise
    except InputError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            raise storage_error(exc, target.parent, f"extracting {zip_path.name}") from None
        raise InputError(f"{zip_path}: extraction failed ({exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
