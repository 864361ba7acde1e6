"""Backbones, offline weights, heads, preprocessing and checkpoint IO for the classifiers the product trains."""

from core.models.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from core.models.factory import (
    HEADS,
    attach_head,
    create_head,
    create_model,
    get_head,
    stage_names,
    unfreeze_last_stages,
)
from core.models.preprocess import (
    ACQUISITION_AUGMENT,
    DEFAULT_AUGMENT,
    DEFAULT_FRAMING,
    FRAMINGS,
    build_transform,
    build_view_transform,
    framing_of,
    preprocess_config,
    to_rgb,
    view_preprocessing,
)
from core.models.registry import DEFAULT_BACKBONE, BackboneSpec, get_backbone, list_backbones

__all__ = [
    "ACQUISITION_AUGMENT",
    "DEFAULT_FRAMING",
    "FRAMINGS",
    "build_view_transform",
    "framing_of",
    "view_preprocessing",
    "BackboneSpec",
    "DEFAULT_AUGMENT",
    "DEFAULT_BACKBONE",
    "HEADS",
    "attach_head",
    "build_transform",
    "create_head",
    "create_model",
    "find_checkpoint",
    "get_backbone",
    "get_head",
    "list_backbones",
    "load_checkpoint",
    "preprocess_config",
    "save_checkpoint",
    "stage_names",
    "to_rgb",
    "unfreeze_last_stages",
]
