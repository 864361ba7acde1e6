"""The bottleneck-feature cache: each image's pooled backbone features computed once and kept on disk."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from core.data import Dataset
from core.data.torch_data import ImageTableDataset
from core.store.files import write_atomically
from core.store.integrity import DIGEST_KEY, arrays_digest, discard_damaged
from core.train.distributed import SINGLE, DistInfo, all_gather_objects

CACHE_VERSION = 1


def feature_cache_key(fingerprint: str, backbone: str, weights_source: str, preprocessing: dict,
                      weights_digest: str | None = None, precision: str = "float32") -> str:
    """sha256 of what determines the features: the data, the backbone and its weights, the preprocessing, and
    the arithmetic (bf16 features from a GPU run are not the float32 ones a CPU run would compute)."""
    payload = {"version": CACHE_VERSION, "fingerprint": fingerprint, "backbone": backbone,
               "weights_source": weights_source, "weights_digest": weights_digest, "precision": precision,
               "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in preprocessing.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """workspace/cache/features/<key>.safetensors: a (n, dim) float32 matrix and, in its metadata, the
    image ids of its rows. Written atomically (temp file + rename), so readers never see half a file."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str) -> tuple[list[str], torch.Tensor] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
                ids = json.loads(metadata["image_ids"])
                features = fh.get_tensor("features")
            intact = metadata.get(DIGEST_KEY) == arrays_digest({"features": features.numpy()}, metadata)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            discard_damaged(path, f"unreadable: {exc}")
            return None
        if not intact or len(ids) != len(features):
            discard_damaged(path, "checksum mismatch" if not intact else "row count differs from its image ids")
            return None
        return ids, features

    def save(self, key: str, ids: list[str], features: torch.Tensor, info: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        features = features.contiguous().float()
        metadata = {"image_ids": json.dumps(ids), "info": json.dumps(info)}
        metadata[DIGEST_KEY] = arrays_digest({"features": features.numpy()}, metadata)
        write_atomically(path, lambda tmp: save_file({"features": features}, tmp, metadata=metadata))
        # A readable note beside it: what these features are (the ids live in the safetensors metadata).
        (self.root / f"{key}.json").write_text(json.dumps({**info, "n_images": len(ids), "updated": time.time()},
                                                          indent=2))
        return path


def auto_workers(n_images: int) -> int:
    """DataLoader workers: none for tiny jobs (process start-up costs more), else up to 4 spare cores."""
    cpus = os.cpu_count() or 1
    return 0 if n_images < 256 or cpus < 2 else min(4, cpus - 1)


@torch.inference_mode()
def extract_features(model: torch.nn.Module, ds: Dataset, rows: np.ndarray, transform, device: torch.device,
                     batch_size: int = 64, num_workers: int | None = None, amp_dtype: torch.dtype | None = None,
                     channels_last: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> torch.Tensor | None:
    """Pooled features (len(rows), dim) on the CPU, in row order; None if stopped part-way."""
    model.eval()
    workers = auto_workers(len(rows)) if num_workers is None else num_workers
    loader = DataLoader(ImageTableDataset(ds, transform, indices=rows), batch_size=batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)
    chunks, done = [], 0
    for images, _ in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            chunks.append(model(images).float().cpu())
        done += len(images)
        if progress is not None:
            progress(done, len(rows))
        if should_stop is not None and should_stop():
            return None
    dim = int(getattr(model, "num_features", 0))
    return torch.cat(chunks) if chunks else torch.zeros((0, dim))


def cached_features(cache: FeatureCache, key: str, info: dict, model: torch.nn.Module, ds: Dataset,
                    rows: np.ndarray, transform, device: torch.device, dist: DistInfo = SINGLE,
                    **extract_kwargs) -> tuple[torch.Tensor | None, dict]:
    """Features for ds's `rows` (in that order): read from the cache, computing and adding only missing images.

    Under torchrun each rank computes a share of the missing images; all ranks get the full matrix.
    Returns (features or None if stopped, stats {"cached": n, "computed": n, "seconds": s})."""
    start = time.perf_counter()
    ids = ds.table["image_id"].to_numpy()[rows].tolist()
    if not ids:
        return torch.zeros((0, int(getattr(model, "num_features", 0)))), {"cached": 0, "computed": 0, "seconds": 0.0}
    stored = cache.load(key)
    known: dict[str, int] = {} if stored is None else {i: j for j, i in enumerate(stored[0])}
    missing = [r for r, i in zip(rows, ids, strict=True) if i not in known]
    new = torch.zeros((0, 0))
    if missing:
        mine = np.asarray(missing[dist.rank::dist.world_size], dtype=np.int64)
        part = extract_features(model, ds, mine, transform, device, **extract_kwargs)
        stopped = all_gather_objects(part is None, dist)
        if any(stopped):
            return None, {}
        parts = all_gather_objects(part, dist)
        # Undo the strided sharding: rank r computed missing[r::world].
        order = np.concatenate([np.arange(len(missing))[r::dist.world_size] for r in range(dist.world_size)])
        new = torch.empty((len(missing), parts[0].shape[1]))
        new[torch.from_numpy(order)] = torch.cat(parts)
        new_ids = ds.table["image_id"].to_numpy()[missing].tolist()
        if dist.is_main:
            # Re-read before writing: another run may have added images meanwhile; keep the union.
            latest = cache.load(key)
            base_ids, base = (latest if latest is not None else ([], torch.zeros((0, new.shape[1]))))
            replaced = set(new_ids)
            keep = [j for j, i in enumerate(base_ids) if i not in replaced]
            all_ids = [base_ids[j] for j in keep] + new_ids
            cache.save(key, all_ids, torch.cat([base[keep], new]) if keep else new, info)
    # Assemble in the requested order with two vectorised gathers (cached rows, freshly computed rows).
    dim = new.shape[1] if missing else stored[1].shape[1]
    features = torch.empty((len(ids), dim))
    fresh = {i: j for j, i in enumerate(ds.table["image_id"].to_numpy()[missing].tolist())} if missing else {}
    from_new = [(k, fresh[i]) for k, i in enumerate(ids) if i in fresh]
    from_old = [(k, known[i]) for k, i in enumerate(ids) if i not in fresh]
    if from_new:
        dst, src = (torch.tensor(v) for v in zip(*from_new, strict=True))
        features[dst] = new[src]
    if from_old:
        dst, src = (torch.tensor(v) for v in zip(*from_old, strict=True))
        features[dst] = stored[1][src]
    return features, {"cached": len(ids) - len(missing), "computed": len(missing),
                      "seconds": time.perf_counter() - start}


def cached_view_features(cache: FeatureCache, ds: Dataset, rows_by_view: list[np.ndarray], model: torch.nn.Module,
                         preprocessing: dict, *, fingerprint: str, backbone: str, weights_source: str,
                         weights_digest: str | None, precision: str, device: torch.device,
                         dist: DistInfo = SINGLE, seed: int = 0,
                         progress: Callable[[int, int], None] | None = None,
                         **extract_kwargs) -> tuple[list[torch.Tensor] | None, dict]:
    """Features of view 0 (the image as stored) for rows_by_view[0] and of acquisition views 1, 2, ... for the
    rows given for each (training images only, usually), each view cached under its own key.

    Returns (one matrix per view, or None if stopped; stats summed over views plus the per-view keys)."""
    from core.models import build_view_transform, view_preprocessing

    total = int(sum(len(r) for r in rows_by_view))
    out, stats, keys, offset = [], {"cached": 0, "computed": 0, "seconds": 0.0}, [], 0
    for view, rows in enumerate(rows_by_view):
        view_config = view_preprocessing(preprocessing, view, seed)
        key = feature_cache_key(fingerprint, backbone, weights_source, view_config, weights_digest, precision)
        info = {"fingerprint": fingerprint, "backbone": backbone, "precision": precision,
                "weights_source": weights_source, "preprocessing": view_config}
        done_before = offset
        step = None if progress is None else (lambda done, _n, base=done_before: progress(base + done, total))
        features, part = cached_features(cache, key, info, model, ds, np.asarray(rows, dtype=np.int64),
                                         build_view_transform(preprocessing, view, seed), device, dist,
                                         progress=step, **extract_kwargs)
        if features is None:
            return None, {}
        out.append(features)
        keys.append(key)
        offset += len(rows)
        for name in ("cached", "computed", "seconds"):
            stats[name] += part[name]
    return out, {**stats, "keys": keys}
