"""On-disk cache of attribution maps keyed by (model, image content, method, parameters, target): a gallery opened
twice is instant the second time. Files are safetensors (arrays + JSON metadata, never pickles), written atomically."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_arrays

from core.explain.maps import AttributionMap
from core.store.files import write_atomically
from core.store.integrity import DIGEST_KEY, arrays_digest, discard_damaged

CACHE_VERSION = 1  # bump when a method's output changes meaning, so old maps stop matching


def image_fingerprint(image: torch.Tensor) -> str:
    """sha256 of the preprocessed tensor's values and shape: the same pixels give the same key whatever its name."""
    array = image.detach().to("cpu", torch.float32).contiguous().numpy()
    digest = hashlib.sha256(repr(tuple(array.shape)).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def map_key(*, model_id: str, image: torch.Tensor | str, method: str, params: dict, target: int,
            output_size: tuple[int, int] | None = None, preprocess: dict | None = None) -> str:
    """The cache key: sha256 of the canonical JSON of everything that shapes a map.

    `model_id` must change when the weights change (e.g. run id + checkpoint hash); `image` is the preprocessed
    tensor (hashed) or an already computed fingerprint."""
    if not model_id:
        raise ValueError("a map cache key needs a model_id that changes with the weights")
    record = {
        "version": CACHE_VERSION,
        "model": str(model_id),
        "image": image if isinstance(image, str) else image_fingerprint(image),
        "method": method,
        "params": {k: v for k, v in sorted(params.items()) if v is not None},
        "target": int(target),
        "output_size": list(output_size) if output_size else None,
        "preprocess": preprocess or None,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, set, np.ndarray)):
        return list(value)
    return str(value)


class MapCache:
    """A folder of cached maps, one file per key (`<root>/<key[:2]>/<key>.safetensors`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_workspace(cls, workspace) -> "MapCache":
        """The workspace's map cache (`<workspace cache_dir>/explain`)."""
        return cls(Path(workspace.cache_dir) / "explain")

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> AttributionMap | None:
        """The cached map, or None when absent; a damaged file (unreadable or failing its checksum) is reported,
        deleted and treated as a miss."""
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with safe_open(str(path), framework="np") as handle:
                metadata = handle.metadata() or {}
                arrays = {name: handle.get_tensor(name) for name in handle.keys()}
            if metadata.get(DIGEST_KEY) != arrays_digest(arrays, metadata):
                raise ValueError("checksum mismatch")
            amap = AttributionMap.from_arrays(arrays, {k: v for k, v in metadata.items() if k != DIGEST_KEY})
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
            discard_damaged(path, str(exc))
            self.misses += 1
            return None
        self.hits += 1
        return amap

    def put(self, key: str, amap: AttributionMap) -> Path:
        """Store `amap` under `key`: written to a temporary file in the same folder, then renamed into place."""
        arrays, metadata = amap.to_arrays()
        metadata = {**metadata, DIGEST_KEY: arrays_digest(arrays, metadata)}
        path = self.path(key)
        payload = save_arrays(arrays, metadata=metadata)
        return write_atomically(path, lambda tmp: Path(tmp).write_bytes(payload))

    def clear(self) -> int:
        """Delete every cached map; returns how many files were removed."""
        removed = 0
        for path in self.root.glob("*/*.safetensors"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed
