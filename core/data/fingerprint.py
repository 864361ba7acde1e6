"""Content fingerprints: a sha256 per image (cached per path, size and mtime) and one per dataset."""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

from core.data.images import NPZ_PREFIX, npz_array
from core.errors import InputError

_CHUNK = 1 << 20
# (path, size, mtime_ns) -> hex digest; a dataset re-loaded in the same process is fingerprinted by stat only.
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def image_digest(path: str) -> str:
    """sha256 of an image file's bytes, read in chunks; for `npz:` references, of the pixel array."""
    if path.startswith(NPZ_PREFIX):
        arr = npz_array(path)
        h = hashlib.sha256(str(arr.shape).encode())
        h.update(arr.tobytes())
        return h.hexdigest()
    try:
        st = os.stat(path)
    except OSError:
        raise InputError(f"{path}: file not found (needed for the dataset fingerprint)") from None
    key = (path, st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = _FILE_DIGESTS[key] = h.hexdigest()
    return digest


def dataset_fingerprint(paths: Iterable[str], labels: Iterable[str]) -> str:
    """sha256 over the sorted (image digest, label) pairs: independent of row order and file location."""
    pairs = sorted(f"{image_digest(p)}\t{lab}" for p, lab in zip(paths, labels))
    h = hashlib.sha256()
    for line in pairs:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
