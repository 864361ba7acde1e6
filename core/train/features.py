"""The bottleneck-feature cache: each image's pooled backbone features computed once and kept on disk."""

from __future__ import annotations

import contextlib
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
from core.errors import InputError
from core.models.registry import feature_dim_of
from core.store.files import write_atomically
from core.store.integrity import DIGEST_KEY, arrays_digest, discard_damaged
from core.store.integrity import file_sha256 as file_digest  # noqa: F401  (callers import it from here)
from core.train.distributed import (SINGLE, DistInfo, SharedJobError, all_gather_objects, barrier, broadcast_object,
                                    new_job_id, rank_failure, shard_file, shard_indices)

CACHE_VERSION = 1
SHARD_PREFIX = ".features-shard-"  # + <job>-r<rank>.<pid>.tmp: one rank's share of a torchrun extraction


def feature_cache_key(fingerprint: str, backbone: str, weights_source: str, preprocessing: dict,
                      weights_digest: str | None = None, precision: str = "float32") -> str:
    """sha256 of what determines the features: the data, the backbone and its weights, the preprocessing, and
    the arithmetic (bf16 features from a GPU run are not the float32 ones a CPU run would compute)."""
    payload = {"version": CACHE_VERSION, "fingerprint": fingerprint, "backbone": backbone,
               "weights_source": weights_source, "weights_digest": weights_digest, "precision": precision,
               "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in preprocessing.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()




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

    def add(self, key: str, ids: list[str], features: torch.Tensor, info: dict) -> Path:
        """Add (or replace) these images' rows. The entry is re-read first: another run may have added images
        meanwhile, and the union is kept."""
        latest = self.load(key)
        base_ids, base = latest if latest is not None else ([], torch.zeros((0, features.shape[1])))
        replaced = set(ids)
        keep = [j for j, i in enumerate(base_ids) if i not in replaced]
        return self.save(key, [base_ids[j] for j in keep] + list(ids),
                         torch.cat([base[keep], features]) if keep else features, info)


def auto_workers(n_images: int) -> int:
    """DataLoader workers: none for tiny jobs (process start-up costs more), else up to 4 spare cores."""
    cpus = os.cpu_count() or 1
    return 0 if n_images < 256 or cpus < 2 else min(4, cpus - 1)


@torch.inference_mode()
def extract_features(model: torch.nn.Module, ds: Dataset, rows: np.ndarray, transform, device: torch.device,
                     batch_size: int = 64, num_workers: int | None = None, amp_dtype: torch.dtype | None = None,
                     channels_last: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
    """Pooled features (len(rows), dim) on the CPU, in row order; None if stopped part-way. `forward` (a
    core.models.precision.FrozenForward: ONNX Runtime or torch, whichever this machine runs faster) replaces the
    model's own autocast call when given."""
    model.eval()
    workers = auto_workers(len(rows)) if num_workers is None else num_workers
    loader = DataLoader(ImageTableDataset(ds, transform, indices=rows), batch_size=batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)
    chunks, done = [], 0
    for images, _ in loader:
        images = images.to(device, non_blocking=True)
        if forward is not None:
            chunks.append(forward(images).float().cpu())
        else:
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                chunks.append(model(images).float().cpu())
        done += len(images)
        if progress is not None:
            progress(done, len(rows))
        if should_stop is not None and should_stop():
            return None
    return torch.cat(chunks) if chunks else torch.zeros((0, feature_dim_of(model)))


def cached_features(cache: FeatureCache, key: str, info: dict, model: torch.nn.Module, ds: Dataset,
                    rows: np.ndarray, transform, device: torch.device, dist: DistInfo = SINGLE,
                    **extract_kwargs) -> tuple[torch.Tensor | None, dict]:
    """Features for ds's `rows` (in that order): read from the cache, computing and adding only missing images.

    Under torchrun (`dist`) rank 0 reads the cache and names the missing images, each rank extracts its share into
    a shard file beside the cache and rank 0 merges the shards into it (`_SharedExtraction`). Only rank 0 gets the
    matrix: the other ranks return (None, stats with "worker": True) as soon as their share is in; a failure on any
    rank raises one SharedJobError on every rank and leaves the cache as it was.
    Returns (features or None if stopped, stats {"cached": n, "computed": n, "seconds": s})."""
    start = time.perf_counter()

    def extract(part: np.ndarray, total: int) -> torch.Tensor | None:
        kwargs = dict(extract_kwargs)
        step = kwargs.get("progress")
        if step is not None and dist.enabled:  # rank 0's progress stands for all ranks' (they run side by side)
            kwargs["progress"] = lambda done, _n: step(min(done * dist.world_size, total), total)
        return extract_features(model, ds, part, transform, device, **kwargs)

    job = _SharedExtraction(cache, dist) if dist.enabled else None
    if job is not None and not dist.is_main:
        computed = job.work(ds, extract)
        stats = {"worker": True, "cached": 0, "computed": computed, "seconds": time.perf_counter() - start}
        return None, ({} if computed is None else stats)
    try:
        ids = ds.table["image_id"].to_numpy()[rows].tolist()
        stored = cache.load(key) if ids else None
        known: dict[str, int] = {} if stored is None else {i: j for j, i in enumerate(stored[0])}
        missing = [r for r, i in zip(rows, ids, strict=True) if i not in known]
    except Exception as exc:
        if job is not None:
            job.stop(exc)  # every other rank fails with rank 0's reason
        raise
    new_ids = ds.table["image_id"].to_numpy()[missing].tolist()
    new = torch.zeros((0, 0))
    if job is not None:
        new = job.lead(ds, missing, extract, lambda merged: cache.add(key, new_ids, merged, info))
    elif missing:
        new = extract(np.asarray(missing, dtype=np.int64), len(missing))
        if new is not None:
            cache.add(key, new_ids, new, info)
    if new is None:
        return None, {}
    shared = {} if job is None else {"images_per_rank": job.images_per_rank}
    if not ids:
        return torch.zeros((0, feature_dim_of(model))), {"cached": 0, "computed": 0, "seconds": 0.0, **shared}
    # Assemble in the requested order with two vectorised gathers (cached rows, freshly computed rows).
    dim = new.shape[1] if missing else stored[1].shape[1]
    features = torch.empty((len(ids), dim))
    fresh = {i: j for j, i in enumerate(new_ids)}
    from_new = [(k, fresh[i]) for k, i in enumerate(ids) if i in fresh]
    from_old = [(k, known[i]) for k, i in enumerate(ids) if i not in fresh]
    if from_new:
        dst, src = (torch.tensor(v) for v in zip(*from_new, strict=True))
        features[dst] = new[src]
    if from_old:
        dst, src = (torch.tensor(v) for v in zip(*from_old, strict=True))
        features[dst] = stored[1][src]
    return features, {"cached": len(ids) - len(missing), "computed": len(missing),
                      "seconds": time.perf_counter() - start, **shared}


class _SharedExtraction:
    """One cache entry's missing images under torchrun. Every rank makes the same collective calls in the same
    order, whatever happens to it: plan (broadcast from 0: a job id and the missing rows, or rank 0's failure)
    -> [report (all_gather: its shard file, stopped, or its error) -> outcome (broadcast from 0) -> barrier].

    Rank r extracts the strided share rows[r::world] (shard_indices) and writes it atomically to
    `<cache>/.features-shard-<job>-r<rank>.<pid>.tmp`; rank 0 checks each shard holds the images it asked for,
    puts them back in the missing rows' order and adds them to the cache (FeatureCache.add: atomic, checksummed)
    before it announces the outcome, so an error anywhere (merge and write included) reaches every rank. Each rank
    removes its own shard before the last barrier: when any rank returns, no shard file is left."""

    def __init__(self, cache: FeatureCache, dist: DistInfo):
        self.cache, self.dist = cache, dist
        self.images_per_rank = [0] * dist.world_size  # what each rank extracted (rank 0 knows it once merged)

    def _plan(self, message: dict | None) -> dict:
        return broadcast_object(message if self.dist.is_main else None, self.dist)

    def stop(self, exc: BaseException) -> None:
        """Rank 0 failed before it could name the work: the other ranks fail with its reason."""
        self._plan({"stop": rank_failure(exc, 0)})

    def lead(self, ds: Dataset, missing: list[int], extract, add: Callable[[torch.Tensor], object]
             ) -> torch.Tensor | None:
        """Rank 0: the features of `missing` in its order, already added to the cache (None: stopped)."""
        plan = self._plan({"job": new_job_id(), "rows": np.asarray(missing, dtype=np.int64), "n": len(ds)})
        if not len(missing):
            return torch.zeros((0, 0))
        return self._share(ds, plan, extract, add)

    def work(self, ds: Dataset, extract) -> int | None:
        """A rank other than 0: extract its share; the number of images it computed (None: stopped)."""
        plan = self._plan(None)
        if "stop" in plan:
            raise SharedJobError(plan["stop"], echo=False)
        return self._share(ds, plan, extract) if len(plan["rows"]) else 0

    def _share(self, ds: Dataset, plan: dict, extract, add=None):
        info, rows = self.dist, plan["rows"]
        mine = rows[np.asarray(shard_indices(len(rows), info), dtype=np.int64)]
        status: dict = {"rows": len(mine)}
        shard: Path | None = None
        try:
            if len(ds) != plan["n"]:
                raise InputError(f"it read {len(ds)} images where rank 0 read {plan['n']}: was the data changed "
                                 "while the processes started? Run it again")
            part = extract(mine, len(rows))
            if part is None:
                status["stopped"] = True
            else:
                ids = ds.table["image_id"].to_numpy()[mine].tolist()
                path = shard_file(self.cache.root, SHARD_PREFIX, plan["job"], info.rank)
                try:
                    write_atomically(path, lambda tmp: save_file({"features": part.contiguous().float()}, tmp,
                                                                 metadata={"image_ids": json.dumps(ids)}))
                except OSError as exc:
                    raise InputError(f"cannot write its share of the features into {self.cache.root} "
                                     f"({exc.strerror or exc})") from exc
                shard, status["shard"] = path, str(path)
        except Exception as exc:  # noqa: BLE001 - reported to every rank, which all fail with it
            status["error"] = rank_failure(exc, info.rank)
        merged, outcome = None, None
        try:
            statuses = all_gather_objects(status, info)
            if info.is_main:
                try:
                    merged, outcome = self._merge(ds, rows, statuses, add)
                except Exception as exc:  # noqa: BLE001 - the cache is as it was; every rank fails with it
                    outcome = {"error": rank_failure(exc, 0)}
            outcome = broadcast_object(outcome, info)
        finally:
            if shard is not None:
                with contextlib.suppress(OSError):  # else `core doctor` removes it once this process is gone
                    shard.unlink(missing_ok=True)
        barrier(info)
        if outcome and "error" in outcome:
            raise SharedJobError(outcome["error"], echo=info.is_main)
        if outcome and outcome.get("stopped"):
            return None
        return merged if info.is_main else len(mine)

    def _merge(self, ds: Dataset, rows: np.ndarray, statuses: list[dict],
               add) -> tuple[torch.Tensor | None, dict | None]:
        """Rank 0: (the merged features, added to the cache; None) or (None, the outcome: every rank's errors, or
        stopped)."""
        errors = [s["error"] for s in statuses if "error" in s]
        if errors:
            return None, {"error": "; ".join(errors)}
        if any(s.get("stopped") for s in statuses):
            return None, {"stopped": True}
        ids = ds.table["image_id"].to_numpy()[rows].tolist()
        parts, order = [], []
        for rank, status in enumerate(statuses):
            share = list(shard_indices(len(rows), DistInfo(rank, self.dist.world_size)))
            try:
                with safe_open(status["shard"], framework="pt") as fh:
                    part_ids = json.loads((fh.metadata() or {})["image_ids"])
                    part = fh.get_tensor("features")
            except Exception as exc:  # noqa: BLE001 - named: the usual cause is a folder this node cannot see
                raise SharedJobError(f"rank {rank}'s shard {status['shard']} cannot be read on rank 0 ({exc}): is "
                                     "the workspace on a file system every node sees?") from None
            if part_ids != [ids[k] for k in share] or len(part) != len(share):
                raise SharedJobError(f"rank {rank}'s shard holds other images than rank 0 asked it for: the "
                                     "processes read different data. Run it again")
            parts.append(part)
            order += share
            self.images_per_rank[rank] = len(share)
        merged = torch.empty((len(rows), parts[0].shape[1]))
        merged[torch.as_tensor(order, dtype=torch.long)] = torch.cat(parts)
        add(merged)
        return merged, None


def cached_view_features(cache: FeatureCache, ds: Dataset, rows_by_view: list[np.ndarray], model: torch.nn.Module,
                         preprocessing: dict, *, fingerprint: str, backbone: str, weights_source: str,
                         weights_digest: str | None, precision: str, device: torch.device,
                         dist: DistInfo = SINGLE, seed: int = 0,
                         progress: Callable[[int, int], None] | None = None,
                         **extract_kwargs) -> tuple[list[torch.Tensor] | None, dict]:
    """Features of view 0 (the image as stored) for rows_by_view[0] and of acquisition views 1, 2, ... for the
    rows given for each (training images only, usually), each view cached under its own key.

    Returns (one matrix per view, or None if stopped; stats summed over views plus the per-view keys). Under
    torchrun the ranks other than 0 get (None, stats with "worker": True) once their shares are cached."""
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
        if features is None and not part.get("worker"):
            return None, {}
        out.append(features)
        keys.append(key)
        offset += len(rows)
        for name in ("cached", "computed", "seconds"):
            stats[name] += part[name]
        if "images_per_rank" in part:  # under torchrun, on rank 0: who extracted how many, over the views
            before = stats.get("images_per_rank") or [0] * dist.world_size
            stats["images_per_rank"] = [x + y for x, y in zip(before, part["images_per_rank"], strict=True)]
    if dist.enabled and not dist.is_main:
        return None, {**stats, "keys": keys, "worker": True}  # its shares are in the cache; rank 0 holds the matrices
    return out, {**stats, "keys": keys}
