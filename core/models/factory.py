"""create_model: a timm backbone with the best available weights and a new classification head; stage freezing."""

from __future__ import annotations

import operator
import re
from pathlib import Path

import torch
from timm.models import group_parameters
from torch import nn

from core.errors import InputError
from core.models.feature_stats import InputAffine
from core.models.registry import BackboneSpec, feature_dim_of, get_backbone
from core.models.weights import build_backbone, classifier_prefix, get_head

HEADS = ("linear", "mlp")


def create_head(
    feature_dim: int, num_classes: int, head: str = "linear", hidden: int = 64, drop_rate: float = 0.0
) -> nn.Module:
    """The module that maps pooled features to class logits; trainable alone on cached features.

    linear: Dropout -> Linear.  mlp: Linear(hidden) -> ReLU -> Dropout -> Linear (the Keras reproduction's
    GAP -> Dense 64 -> softmax). Both are nn.Sequential so checkpoints have one key layout per head kind.
    """
    if head not in HEADS:
        raise InputError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if int(num_classes) < 1:
        raise InputError(f"num_classes must be at least 1 for a head, got {num_classes}")
    if not 0.0 <= float(drop_rate) < 1.0:
        raise InputError(f"drop_rate must be in [0, 1), got {drop_rate}")
    if head == "linear":
        module = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(feature_dim, num_classes))
    else:
        if int(hidden) < 1:
            raise InputError(f"hidden must be at least 1 for the mlp head, got {hidden}")
        module = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Dropout(drop_rate), nn.Linear(hidden, num_classes)
        )
    # Plain attributes (not state) that attach_head and save_checkpoint read back.
    module.head_kind = head
    module.hidden = int(hidden) if head == "mlp" else None
    module.drop_rate = float(drop_rate)
    module.num_classes = int(num_classes)
    module.feature_dim = int(feature_dim)
    return module


def _set_submodule(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def attach_head(model: nn.Module, head_module: nn.Module) -> nn.Module:
    """Put a head from create_head into the model's classifier slot (replacing what is there); returns the model."""
    if getattr(head_module, "head_kind", None) not in HEADS:
        raise TypeError("attach_head needs a module made by create_head (it records the head kind)")
    width = feature_dim_of(model)
    if head_module.feature_dim != width:
        raise InputError(f"the head expects {head_module.feature_dim} features but the backbone gives {width}")
    _set_submodule(model, classifier_prefix(model), head_module)
    model.num_classes = head_module.num_classes
    model.head_kind = head_module.head_kind
    model.head_hidden = head_module.hidden
    model.head_drop_rate = head_module.drop_rate
    return model


def set_input_affine(model: nn.Module, affine: nn.Module) -> nn.Module:
    """Put a fixed feature map (core.models.feature_stats.InputAffine) in front of the model's head, replacing one
    already there: the head becomes nn.Sequential(affine, *its layers) with its attributes kept, so get_head,
    attach_head and the head's last Linear layer stay as they were. Returns the model."""
    head = get_head(model)
    if getattr(head, "head_kind", None) not in HEADS or not isinstance(head, nn.Sequential):
        raise InputError("an input affine map needs a head made by create_head; this model has none")
    layers = list(head)
    if layers and isinstance(layers[0], InputAffine):
        layers = layers[1:]
    new = nn.Sequential(affine, *layers)
    for name in ("head_kind", "hidden", "drop_rate", "num_classes", "feature_dim"):
        setattr(new, name, getattr(head, name))
    _set_submodule(model, classifier_prefix(model), new)
    return model


def input_affine(model: nn.Module):
    """The InputAffine in front of the model's head, or None."""
    head = get_head(model)
    first = head[0] if isinstance(head, nn.Sequential) and len(head) else None
    return first if isinstance(first, InputAffine) else None


def create_model(
    backbone: str | BackboneSpec,
    num_classes: int,
    pretrained: bool = True,
    head: str = "linear",
    weights_file: str | Path | None = None,
    drop_rate: float = 0.0,
    hidden: int = 64,
) -> nn.Module:
    """A timm model for `num_classes` classes; the ImageNet classifier is dropped and a new head attached.

    num_classes=0 gives the pooled-feature extractor (output: (batch, feature_dim)). The model carries
    `backbone_name`, `weights_source` (starts with "imagenet", "local file" or "random init"), `num_classes`,
    `head_kind` ("linear" | "mlp" | "none"), `head_hidden`, `head_drop_rate`. It is returned in train mode, as timm does.
    """
    spec = get_backbone(backbone)
    given = num_classes
    try:
        # operator.index accepts numpy integers (a count from a label array) but not floats or strings.
        num_classes = -1 if isinstance(given, bool) else operator.index(given)
    except TypeError:
        num_classes = -1
    if num_classes < 0:
        raise InputError(f"num_classes must be a whole number >= 0, got {given!r}")
    if head not in HEADS:
        raise InputError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    head_module = create_head(spec.feature_dim, num_classes, head, hidden, drop_rate) if num_classes else None
    if spec.members:
        from core.models.ensemble import build_ensemble

        model, source = build_ensemble(spec, pretrained=pretrained, weights_file=weights_file)
    else:
        model, source = build_backbone(spec, pretrained=pretrained, weights_file=weights_file)
    _check_feature_width(spec, model)
    model.backbone_name = spec.name
    model.backbone_spec = spec  # what feature_dim_of reads: the spec is the one source of the feature width
    model.weights_source = source
    model.num_classes = 0
    model.head_kind, model.head_hidden, model.head_drop_rate = "none", None, 0.0
    if head_module is not None:
        attach_head(model, head_module)
    return model


_WIDTH_CHECKED: set[BackboneSpec] = set()
_WIDTH_PROBE_SIDE = 64


def _pooled_width(extractor: nn.Module, side: int) -> int:
    return int(extractor(torch.zeros(1, 3, side, side)).shape[-1])


def _check_feature_width(spec: BackboneSpec, extractor: nn.Module) -> None:
    """Once per spec and process: the pooled features `extractor` (no head yet) gives must be spec.feature_dim wide,
    else the registry entry is wrong and the head would not fit; refused with the width to write there."""
    if spec in _WIDTH_CHECKED:
        return
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.inference_mode():
            try:  # pooling makes the width independent of the input size: a small input is cheaper
                width = _pooled_width(extractor, min(spec.default_size, _WIDTH_PROBE_SIDE))
            except (RuntimeError, AssertionError, ValueError):  # a model fixed to its native size
                width = _pooled_width(extractor, spec.default_size)
    finally:
        extractor.train(was_training)
    if width != spec.feature_dim:
        raise InputError(f"backbone {spec.name}: its registry entry (core/models/registry.py) says feature_dim="
                         f"{spec.feature_dim}, but its pooled features, which the head reads, are {width} wide; "
                         f"set feature_dim={width}")
    _WIDTH_CHECKED.add(spec)


# ---- stages, for fine-tuning the top of the network ------------------------------------------------------


def _module_of(param_name: str) -> str:
    # "blocks.6.0.conv_pw.weight" -> "blocks.6"; "features.denseblock4.x.y" -> "features.denseblock4";
    # "conv_stem.weight" -> "conv_stem": stop after the first numeric part, else after two parts.
    parts = param_name.split(".")[:-1] or param_name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:2])


def _stage_label(param_names: list[str]) -> str:
    # Modules the group covers, with runs of numbered siblings collapsed: layer1.0+layer1.1+layer1.2 -> layer1.
    modules = list(dict.fromkeys(_module_of(n) for n in param_names))
    parents = [m.rpartition(".")[0] if m.rpartition(".")[2].isdigit() else None for m in modules]
    label = []
    for module, parent in zip(modules, parents):
        name = parent if parent and parents.count(parent) > 1 else module
        if name not in label:
            label.append(name)
    return "+".join(label)


def _stage_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(stage name, parameter names) from input to output, the classifier left out.

    Stages come from timm's own group_matcher(coarse=True) (the grouping timm uses for layer-wise learning
    rates): stem, one group per stage, and the last stage with the final conv/norm.
    """
    prefix = classifier_prefix(model)
    is_head = re.compile(rf"^{re.escape(prefix)}(\.|$)")
    groups = group_parameters(model, model.group_matcher(coarse=True))
    head_parent = prefix.rpartition(".")[0]
    stages: list[list[str]] = []
    for names in groups.values():
        names = [n for n in names if not is_head.match(n)]
        if not names:
            continue
        if head_parent and stages and all(n.startswith(head_parent + ".") for n in names):
            # A norm inside the classifier's container (ConvNeXt's head.norm) belongs with the last stage.
            stages[-1] = stages[-1] + names
        else:
            stages.append(names)
    return [(_stage_label(names), names) for names in stages]


def stage_names(model: nn.Module) -> list[str]:
    """Names of the backbone's stages from input to output (e.g. 'conv_stem+bn1', 'blocks.0', ..., 'layer4')."""
    return [name for name, _ in _stage_groups(model)]


def unfreeze_last_stages(model: nn.Module, n: int) -> list[str]:
    """Train only the last `n` backbone stages and the head (n=0: head only; n=-1: everything).

    Sets requires_grad and returns the names of the trainable stages. BatchNorm statistics of frozen stages
    still update in train mode; the trainer keeps those modules in eval mode if it wants them fixed.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < -1:
        raise InputError(f"stages to unfreeze must be -1 (all) or a whole number >= 0, got {n!r}")
    stages = _stage_groups(model)
    if n == -1:
        chosen = stages
    else:
        chosen = stages[len(stages) - min(n, len(stages)):] if n else []
    trainable = {name for _, names in chosen for name in names}
    prefix = classifier_prefix(model)
    for name, param in model.named_parameters():
        param.requires_grad = name in trainable or name == prefix or name.startswith(prefix + ".")
    return [name for name, _ in chosen]
