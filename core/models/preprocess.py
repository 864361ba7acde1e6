"""Preprocessing that travels with the model: timm's data config, and PIL -> tensor transforms for eval and training."""

from __future__ import annotations

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import resolve_data_config
from timm.data.transforms import MaybePILToTensor
from timm.data.transforms_factory import create_transform, transforms_imagenet_eval
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from core.errors import InputError
from core.models.registry import BackboneSpec, get_backbone
from core.models.weights import LITE_MEAN_STD, offline_weights_path

CROP_MODES = ("center", "squash", "border")

# Training augmentation for medical images: mild geometry and intensity changes. No vertical flip: an upside-down
# OCT B-scan or chest film is not a plausible image.
DEFAULT_AUGMENT = {
    "hflip": True,
    "vflip": False,
    "rotate_deg": 10.0,
    "brightness": 0.1,
    "contrast": 0.1,
    "random_resized_crop": (0.8, 1.0),
}


def preprocess_config(
    backbone_or_model: str | BackboneSpec | nn.Module,
    image_size: int | tuple[int, int] | None = None,
    crop_mode: str | None = None,
) -> dict:
    """input_size (3, H, W), mean, std, interpolation, crop_pct, crop_mode for a backbone name or a built model.

    From timm's pretrained_cfg via resolve_data_config; a model built with offline EfficientNet-Lite weights
    (or loaded from a checkpoint) carries its own. image_size overrides the input size; crop_mode 'squash'
    keeps the whole image (wide OCT scans lose their sides under the default 'center' crop).
    """
    if isinstance(backbone_or_model, nn.Module):
        data = resolve_data_config(model=backbone_or_model)
    else:
        spec = get_backbone(backbone_or_model)
        pretrained_cfg = timm.models.get_pretrained_cfg(spec.timm_name).to_dict()
        if offline_weights_path(spec) is not None:
            pretrained_cfg.update(mean=LITE_MEAN_STD, std=LITE_MEAN_STD)
        data = resolve_data_config(pretrained_cfg=pretrained_cfg)
    config = {
        "input_size": tuple(int(v) for v in data["input_size"]),
        "interpolation": str(data["interpolation"]),
        "mean": tuple(float(v) for v in data["mean"]),
        "std": tuple(float(v) for v in data["std"]),
        "crop_pct": float(data["crop_pct"]),
        "crop_mode": str(data.get("crop_mode") or "center"),
    }
    if image_size is not None:
        height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if int(height) < 8 or int(width) < 8:
            raise InputError(f"image_size must be at least 8 pixels, got {image_size}")
        config["input_size"] = (3, int(height), int(width))
    if crop_mode is not None:
        if crop_mode not in CROP_MODES:
            raise InputError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
        config["crop_mode"] = crop_mode
    return config


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB; 16-bit and float greyscale are rescaled to their own range first."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert("L") clips values above 255, which would whiten most of a 16-bit scan.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
        image = Image.fromarray(scaled.round().astype(np.uint8))  # 2-D uint8 -> mode "L"
    return image.convert("RGB")


def _size(config: dict) -> tuple[int, int]:
    try:
        _, height, width = (int(v) for v in config["input_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"preprocessing config needs input_size (3, H, W), got {config.get('input_size')!r}") from exc
    return height, width


def _normalise(config: dict) -> list:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config["mean"]), std=list(config["std"])),
    ]


def _augment_settings(augment: dict | None) -> dict:
    settings = dict(DEFAULT_AUGMENT)
    unknown = sorted(set(augment or {}) - set(DEFAULT_AUGMENT))
    if unknown:
        raise InputError(f"unknown augmentation setting(s) {unknown}; known: {', '.join(DEFAULT_AUGMENT)}")
    settings.update(augment or {})
    for key in ("rotate_deg", "brightness", "contrast"):
        if float(settings[key]) < 0:
            raise InputError(f"augmentation {key} must be >= 0, got {settings[key]}")
    crop = settings["random_resized_crop"]
    if crop:
        low, high = (float(v) for v in crop)
        if not 0.0 < low <= high <= 1.0:
            raise InputError(f"random_resized_crop must be (scale_min, scale_max) within (0, 1], got {crop}")
        settings["random_resized_crop"] = (low, high)
    return settings


def build_transform(config: dict, train: bool = False, augment: dict | None = None):
    """A callable PIL image -> float tensor (3, H, W), normalised per config; greyscale becomes RGB first.

    Eval is timm's own eval transform (resize, crop per crop_pct/crop_mode). Train applies `augment` (keys of
    DEFAULT_AUGMENT, missing ones take the defaults) with torchvision.transforms.v2.
    """
    height, width = _size(config)
    interpolation = str(config.get("interpolation", "bicubic"))
    if not train:
        evaluation = create_transform(
            input_size=(3, height, width),
            is_training=False,
            interpolation=interpolation,
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            crop_pct=config.get("crop_pct"),
            crop_mode=config.get("crop_mode"),
        )
        return v2.Compose([v2.Lambda(to_rgb), evaluation])
    settings = _augment_settings(augment)
    steps: list = [v2.Lambda(to_rgb)]
    if settings["random_resized_crop"]:
        steps.append(
            v2.RandomResizedCrop(
                (height, width), scale=settings["random_resized_crop"], interpolation=InterpolationMode(interpolation)
            )
        )
    else:
        # Same geometry as evaluation (timm's resize + crop), without the tensor conversion that ends it.
        geometry = transforms_imagenet_eval(
            (height, width),
            crop_pct=config.get("crop_pct"),
            crop_mode=config.get("crop_mode"),
            interpolation=interpolation,
            use_prefetcher=True,
        )
        steps += [t for t in geometry.transforms if not isinstance(t, MaybePILToTensor)]
    if settings["hflip"]:
        steps.append(v2.RandomHorizontalFlip())
    if settings["vflip"]:
        steps.append(v2.RandomVerticalFlip())
    if settings["rotate_deg"]:
        steps.append(v2.RandomRotation(float(settings["rotate_deg"]), interpolation=InterpolationMode.BILINEAR))
    if settings["brightness"] or settings["contrast"]:
        steps.append(v2.ColorJitter(brightness=float(settings["brightness"]), contrast=float(settings["contrast"])))
    return v2.Compose(steps + _normalise(config))
