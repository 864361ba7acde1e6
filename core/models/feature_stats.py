"""The training features' per-feature mean and spread, kept beside a checkpoint, and the fixed affine layer that maps
a site's features onto them (label-free feature standardisation, core.infer.recalibrate).

At training the pooled backbone features of the images the head is fitted on (the images as stored, not their
acquisition views) give each feature's mean and standard deviation. Thousands of numbers: they live in a side file,
`feature_stats.safetensors` in the checkpoint folder, which the model card's `feature_stats` record names
({file, n, dim, basis, digest}). save_checkpoint writes a FeatureStats put in the card; read_feature_stats reads it
back, checked against its digest.

`InputAffine` is the fixed per-feature map x' = x * scale + shift put in front of a head (set_input_affine); the
card says so (`input_affine: true`) and load_checkpoint rebuilds it. `PooledFeatures` returns what a model's head
receives (its pooled features), so a full model can be run through the feature cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import InputError
from core.models.weights import classifier_prefix, get_head

FEATURE_STATS_NAME = "feature_stats.safetensors"
CARD_KEY = "feature_stats"
# A site feature whose spread is below this (relative to its training spread, or absolutely) is constant there:
# its z-score is 0, so it is set to the training mean (scale 0) instead of being divided by ~0.
CONSTANT_SPREAD = 1e-6
MAX_FEATURES = 1_000_000


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and (population) standard deviation of `n` images' pooled features."""

    mean: np.ndarray
    std: np.ndarray
    n: int
    basis: str

    @classmethod
    def of(cls, features, basis: str) -> "FeatureStats":
        x = np.asarray(features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
        if x.ndim != 2 or not len(x):
            raise InputError(f"feature statistics need a (images, features) matrix with rows, got shape {x.shape}")
        return cls(x.mean(axis=0), x.std(axis=0), int(len(x)), basis)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def _arrays(stats: FeatureStats) -> dict[str, np.ndarray]:
    return {"mean": np.ascontiguousarray(stats.mean, dtype=np.float64),
            "std": np.ascontiguousarray(stats.std, dtype=np.float64)}


def write_feature_stats(out_dir: str | Path, stats: FeatureStats) -> dict:
    """Write out_dir/feature_stats.safetensors; returns the card's `feature_stats` record."""
    from safetensors.numpy import save_file

    from core.store.files import write_atomically
    from core.store.integrity import arrays_digest

    arrays = _arrays(stats)
    write_atomically(Path(out_dir) / FEATURE_STATS_NAME, lambda tmp: save_file(arrays, tmp))
    return {"file": FEATURE_STATS_NAME, "n": int(stats.n), "dim": stats.dim, "basis": str(stats.basis),
            "digest": arrays_digest(arrays)}


def read_feature_stats(checkpoint_dir: str | Path, card: dict) -> FeatureStats | None:
    """The training feature statistics the card names, or None for a card without them (trained before they were
    stored). InputError when the record or its file is missing, damaged or does not match."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from core.store.integrity import arrays_digest

    record = card.get(CARD_KEY)
    if not record:
        return None
    where = Path(checkpoint_dir)
    if not isinstance(record, dict) or Path(str(record.get("file") or "")).name != record.get("file"):
        raise InputError(f"{where}: the model card's {CARD_KEY} record is malformed: {record!r:.200}")
    path = where / record["file"]
    try:
        arrays = load_file(str(path))
        mean, std = arrays["mean"], arrays["std"]
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: the training feature statistics cannot be read ({exc}); the model card names "
                         "this file") from None
    if (mean.ndim != 1 or mean.shape != std.shape or not 0 < len(mean) <= MAX_FEATURES
            or record.get("dim") not in (None, len(mean))):
        raise InputError(f"{path}: the training feature statistics have shapes {mean.shape} and {std.shape}, not "
                         f"two vectors of the card's {record.get('dim')} features")
    if arrays_digest({"mean": mean, "std": std}) != record.get("digest"):
        raise InputError(f"{path}: the training feature statistics do not match the digest in the model card "
                         "(damaged or replaced)")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()):
        raise InputError(f"{path}: the training feature statistics hold non-finite or negative values")
    return FeatureStats(mean.astype(np.float64), std.astype(np.float64), int(record.get("n") or 0),
                        str(record.get("basis") or ""))


class InputAffine(nn.Module):
    """A fixed per-feature affine map x * scale + shift (buffers, never trained) in front of a head."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(int(dim)))
        self.register_buffer("shift", torch.zeros(int(dim)))

    @classmethod
    def standardising(cls, site: FeatureStats, training: FeatureStats) -> tuple["InputAffine", int]:
        """(the map x' = (x - site mean) / site sd * training sd + training mean, how many features are constant at
        the site and so set to the training mean)."""
        if site.dim != training.dim:
            raise InputError(f"the site's features have {site.dim} dimensions, the training statistics "
                             f"{training.dim}")
        constant = site.std <= CONSTANT_SPREAD * np.maximum(training.std, 1.0)
        scale = np.where(constant, 0.0, training.std / np.where(constant, 1.0, site.std))
        shift = training.mean - scale * site.mean
        module = cls(site.dim)
        module.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        module.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
        return module, int(constant.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class PooledFeatures(nn.Module):
    """`model`'s pooled features, as its head receives them (before any InputAffine): a full model run through
    core.train.features' extraction and cache. `backbone_spec` as the model's (its feature width)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.backbone_spec = model.backbone_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = []
        handle = get_head(self.model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            self.model(x)
        finally:
            handle.remove()
        return seen[0]


def backbone_digest(model: nn.Module) -> str:
    """sha256 of the model's tensors outside its classifier slot (names, shapes, bytes): the same for every run
    derived from one training run (recalibrated, adapted), so their site features share one cache entry."""
    prefix = classifier_prefix(model)
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name == prefix or name.startswith(prefix + "."):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
