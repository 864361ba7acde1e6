"""Backbone features for the audit, from the workspace feature cache (shared with features-mode training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.data.dataset import Dataset
from core.store import Workspace

FEATURE_PRECISION = "float32"


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbone embeds the images: the default backbone, or a run's (its weights file and image size)."""

    backbone: str
    image_size: int | None = None
    pretrained: bool = True
    weights_file: str | None = None

    @classmethod
    def default(cls, image_size: int | None = None) -> "FeatureSpec":
        from core.models import DEFAULT_BACKBONE

        return cls(DEFAULT_BACKBONE, image_size)

    @classmethod
    def of_run(cls, run: dict) -> "FeatureSpec":
        config = run.get("config") or {}
        return cls(config.get("backbone") or run["backbone"], config.get("image_size"),
                   bool(config.get("pretrained", True)), config.get("weights_file"))


class FeatureExtractor:
    """One backbone, built once, embedding any number of datasets through the cache."""

    def __init__(self, ws: Workspace, spec: FeatureSpec):
        import torch

        from core.models import build_transform, create_model, preprocess_config
        from core.train.recipe import resolve_device

        self.ws, self.spec = ws, spec
        self.model = create_model(spec.backbone, 0, pretrained=spec.pretrained, weights_file=spec.weights_file)
        self.device = resolve_device("auto")
        self.model.to(self.device)
        self.preprocessing = preprocess_config(spec.backbone, spec.image_size)
        self.transform = build_transform(self.preprocessing, train=False)
        self._torch = torch

    @property
    def weights_source(self) -> str:
        return str(self.model.weights_source)

    def features(self, ds: Dataset, rows: np.ndarray | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(len(rows), dim) float32 features of ds's rows (all rows by default), cached per dataset fingerprint."""
        from core.train.features import FeatureCache, cached_features, feature_cache_key, file_digest

        rows = np.arange(len(ds)) if rows is None else np.asarray(rows, dtype=np.int64)
        digest = file_digest(self.spec.weights_file) if self.spec.weights_file else None
        key = feature_cache_key(ds.fingerprint, self.spec.backbone, self.weights_source, self.preprocessing,
                                digest, FEATURE_PRECISION)
        info = {"fingerprint": ds.fingerprint, "backbone": self.spec.backbone, "precision": FEATURE_PRECISION,
                "weights_source": self.weights_source, "preprocessing": self.preprocessing, "by": "audit"}
        features, _ = cached_features(FeatureCache(self.ws.cache_dir / "features"), key, info, self.model, ds, rows,
                                      self.transform, self.device, batch_size=32, progress=progress)
        return features.numpy()
