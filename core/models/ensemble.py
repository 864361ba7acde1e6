"""Feature ensembles: several frozen backbones whose pooled features are concatenated into one vector.

EfficientNet-Lite0, -Lite1 and -Lite2 all have genuine ImageNet weights offline; their concatenated features gave
the best cross-validated recipe on the real chest X-rays (benchmarks/bench_recipes.py). The ensemble behaves as one
timm-style backbone: one input (at the largest member's size), `num_features` (the spec's feature_dim), a `pretrained_cfg` carrying the
preprocessing, and a classifier slot (`head`) that create_model fills. Each member sees the input resized to its own
native size (antialiased), as it was trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InputError


class FeatureEnsemble(nn.Module):
    """Concatenated pooled features of `members` (timm models built with num_classes=0), then `head`."""

    def __init__(self, members: list[nn.Module], native_sizes: list[int], pretrained_cfg: dict, num_features: int):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.native_sizes = [int(s) for s in native_sizes]
        self.num_features = int(num_features)  # the members' registry feature_dim summed (the spec's)
        self.head = nn.Identity()
        self.pretrained_cfg = dict(pretrained_cfg)
        self.default_cfg = self.pretrained_cfg

    def _member_input(self, x: torch.Tensor, size: int) -> torch.Tensor:
        # Sizes relative to the largest member's: a 260 px input gives lite0 224 px, as at its native scale.
        scale = size / max(self.native_sizes)
        h, w = (max(8, round(d * scale)) for d in x.shape[-2:])
        if (h, w) == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(self._member_input(x, s)) for m, s in zip(self.members, self.native_sizes)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False):
        raise InputError("a feature ensemble is used frozen (features mode); fine-tune one of its members instead")


def build_ensemble(spec, pretrained: bool = True, weights_file=None) -> tuple[nn.Module, str]:
    """The ensemble for a registry spec with `members`, each member with its best available weights."""
    from core.models.preprocess import preprocess_config
    from core.models.registry import get_backbone
    from core.models.weights import build_backbone

    if weights_file is not None:
        raise InputError(f"{spec.name}: a feature ensemble takes no weights file; its members load their own")
    members, sources, sizes = [], [], []
    for name in spec.members:
        member_spec = get_backbone(name)
        model, source = build_backbone(member_spec, pretrained=pretrained)
        members.append(model)
        sources.append(f"{name}: {source}")
        sizes.append(member_spec.default_size)
    largest = spec.members[sizes.index(max(sizes))]
    config = preprocess_config(largest)
    cfg = {"architecture": spec.name, "classifier": "head", "input_size": config["input_size"],
           "mean": config["mean"], "std": config["std"], "interpolation": config["interpolation"],
           "crop_pct": config["crop_pct"], "crop_mode": config["crop_mode"], "num_classes": 0}
    return FeatureEnsemble(members, sizes, cfg, spec.feature_dim), "; ".join(sources)
