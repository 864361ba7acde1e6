"""Checksums of cached payloads, verified on read: a damaged cache entry is reported, deleted and recomputed.

Every cache file the product writes (bottleneck features, attribution maps, predictions tables) carries a
sha256 of its payload in its own metadata. A flipped bit inside the data leaves a file's header valid, so a
format that still parses is not proof of an intact payload; the checksum is.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from core.errors import InputError

DIGEST_KEY = "payload_sha256"
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (checkpoints, weights, zips, imported models), cached per (path, size, mtime) so
    asking again for a big file costs a stat only."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        with open(path, "rb") as f:
            _FILE_DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _FILE_DIGESTS[key]


class DamagedCacheWarning(UserWarning):
    """A cache entry failed its checksum (or could not be read) and was deleted; it is being recomputed."""


class DamagedFileError(InputError):
    """A stored file's payload does not match its checksum (or the file cannot be parsed)."""


def arrays_digest(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> str:
    """sha256 over named arrays (name, dtype, shape, bytes) and text metadata, in sorted order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        h.update(array.tobytes())
    for key in sorted(metadata or {}):
        if key != DIGEST_KEY:
            h.update(json.dumps([key, str(metadata[key])]).encode())
    return h.hexdigest()


def frame_digest(frame: pd.DataFrame, meta: Mapping | None = None) -> str:
    """sha256 of a table's column names and values (numbers by their bytes, everything else as text), so the
    same table read back from parquet gives the same digest whatever text dtype pandas chose; and of its
    metadata (run, test set, task...) but for the digest itself."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in (meta or {}).items() if k != DIGEST_KEY}, sort_keys=True,
                        default=str).encode())
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind in "biuf":
            values = np.ascontiguousarray(column.to_numpy())
            h.update(json.dumps([str(name), values.dtype.str]).encode())
            h.update(values.tobytes())
        else:
            h.update(json.dumps([str(name), "text"]).encode())
            h.update(json.dumps([None if v is None or (isinstance(v, float) and v != v) else str(v)
                                 for v in column.tolist()]).encode())
    return h.hexdigest()


def discard_damaged(path: str | Path, reason: str) -> str:
    """Delete a damaged cache entry and report it (a DamagedCacheWarning); returns the message."""
    path = Path(path)
    message = f"{path}: damaged cache entry ({reason}); deleted, it will be recomputed"
    path.unlink(missing_ok=True)
    warnings.warn(message, DamagedCacheWarning, stacklevel=3)
    return message


def verify_frame(frame: pd.DataFrame, meta: Mapping, path: str | Path) -> None:
    """DamagedFileError when a table's metadata carries a checksum its values and metadata do not match (tables
    written before checksums existed carry none and are read as they are)."""
    expected = meta.get(DIGEST_KEY)
    if expected is None:
        return
    try:
        actual = frame_digest(frame, meta)
    except Exception as exc:  # noqa: BLE001 - e.g. invalid UTF-8 in a text column surfaces only when read
        raise DamagedFileError(f"{path}: the table's values cannot be read ({exc}); the file is damaged") from None
    if expected != actual:
        raise DamagedFileError(f"{path}: the table's values do not match its checksum (the file is damaged); "
                               "delete it and compute it again (predictions: Test sets page, or `python -m core "
                               "predict`)")
