"""Preprocessing that travels with the model: timm's data config, and PIL -> tensor transforms for eval and training."""

from __future__ import annotations

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import resolve_data_config
from timm.data.transforms import CenterCropOrPad, MaybePILToTensor
from timm.data.transforms_factory import create_transform, transforms_imagenet_eval
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from core.errors import InputError
from core.models.registry import BackboneSpec, get_backbone
from core.models.weights import LITE_MEAN_STD, offline_weights_path

CROP_MODES = ("center", "squash", "border")

# How an image is framed into the model's square input, in users' words -> timm's crop_mode (and crop_pct).
# Medical images keep the whole field of view: a centre crop cuts the lateral lung fields of a landscape chest film
# and the edges of a wide OCT scan, and frames training originals differently from test images that arrive already
# resized to squares. "center" (ImageNet's resize + centre crop, the backbone's crop_pct) stays available.
FRAMINGS = {
    "squash": "whole image resized to the input size (aspect ratio not kept)",
    "letterbox": "whole image fitted inside the input size, aspect ratio kept, padded with mid-grey",
    "center": "ImageNet evaluation: short side resized, centre crop (image edges are lost)",
}
DEFAULT_FRAMING = "squash"
_FRAMING_CROP_MODE = {"squash": "squash", "letterbox": "border", "center": "center"}

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
    framing: str | None = None,
) -> dict:
    """input_size (3, H, W), mean, std, interpolation, crop_pct, crop_mode (and framing) for a backbone or model.

    From timm's pretrained_cfg via resolve_data_config; a model built with offline EfficientNet-Lite weights
    (or loaded from a checkpoint) carries its own. image_size overrides the input size. `framing` (one of
    FRAMINGS) sets crop_mode and crop_pct together: 'squash' and 'letterbox' keep the whole image (crop_pct 1).
    `crop_mode` alone is timm's raw setting, kept for configs written before framings existed.
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
    return _resolved(config, image_size, crop_mode, framing)


def _resolved(config: dict, image_size, crop_mode: str | None, framing: str | None) -> dict:
    """`config` with the input size, timm crop mode and framing given applied (each checked)."""
    if image_size is not None:
        height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if int(height) < 8 or int(width) < 8:
            raise InputError(f"image_size must be at least 8 pixels, got {image_size}")
        config["input_size"] = (3, int(height), int(width))
    if crop_mode is not None:
        if crop_mode not in CROP_MODES:
            raise InputError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
        config["crop_mode"] = crop_mode
    if framing is not None:
        if framing not in FRAMINGS:
            raise InputError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
        config["crop_mode"] = _FRAMING_CROP_MODE[framing]
        if framing != "center":
            config["crop_pct"] = 1.0
        config["framing"] = framing
    return config


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


def stated_preprocess_config(image_size: int | tuple[int, int], mean, std, *, interpolation: str = "bilinear",
                             framing: str = DEFAULT_FRAMING, crop_pct: float = 0.875) -> dict:
    """The same description for a model trained elsewhere, from the numbers its card states (mean and std of three
    channels; crop_pct only matters for the 'center' framing)."""
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    config = {"input_size": (3, 224, 224), "interpolation": str(interpolation),
              "mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std),
              "crop_pct": float(crop_pct), "crop_mode": "center"}
    return _resolved(config, image_size, None, framing)


def framing_of(config: dict) -> str:
    """The framing a preprocess config applies (older configs carry only timm's crop_mode and crop_pct)."""
    if config.get("framing") in FRAMINGS:
        return str(config["framing"])
    mode = config.get("crop_mode") or "center"
    if mode == "squash" and float(config.get("crop_pct") or 1.0) == 1.0:
        return "squash"
    if mode == "border" and float(config.get("crop_pct") or 1.0) == 1.0:
        return "letterbox"
    return "center"


def to_8bit(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit greyscale ("L", kept one plane) or RGB; 16-bit and float greyscale are rescaled to
    their own range first. to_8bit(image).convert("RGB") is to_rgb(image)."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert("L") clips values above 255, which would whiten most of a 16-bit scan.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
        return Image.fromarray(scaled.round().astype(np.uint8))  # 2-D uint8 -> mode "L"
    return image.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB; 16-bit and float greyscale are rescaled to their own range first."""
    return image if image.mode == "RGB" else to_8bit(image).convert("RGB")


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


def _eval_geometry(config: dict) -> list:
    """timm's eval resize + crop (per crop_pct/crop_mode) for PIL images, without its tensor conversion."""
    geometry = transforms_imagenet_eval(
        _size(config),
        crop_pct=config.get("crop_pct"),
        crop_mode=config.get("crop_mode"),
        interpolation=str(config.get("interpolation", "bicubic")),
        mean=tuple(config["mean"]),
        use_prefetcher=True,
    )
    return [t for t in geometry.transforms if not isinstance(t, MaybePILToTensor)]


class EvalTransform:
    """The eval transform: PIL image -> float tensor (3, H, W), timm's eval geometry then ToTensor + Normalize.

    Same pixels as timm's create_transform(is_training=False) after to_rgb, computed faster: a greyscale image
    (mode "L", every X-ray and OCT scan) is resized and cropped as one plane, then its one normalised plane is
    broadcast to the three channels. PIL resamples each channel of an RGB image with the same 8-bit arithmetic, so
    the result equals the RGB path's bit for bit (tests/test_framing.py checks it), at about half the resampling
    and a third of the tensor work. The letterbox pad fill must be grey for that (it is for every mean with equal channels);
    otherwise, and for colour images, the image goes through to_rgb and the RGB geometry.
    """

    def __init__(self, config: dict):
        self.config = dict(config)
        self.size = _size(config)
        self.rgb_geometry = v2.Compose(_eval_geometry(config))
        fill = {round(255 * float(v)) for v in config["mean"]}
        grey_steps = _eval_geometry(config)
        for step in grey_steps:
            if isinstance(step, CenterCropOrPad):
                step.fill = next(iter(fill))  # one value for one plane (grey: all channels' fills are equal)
        self.grey_geometry = v2.Compose(grey_steps) if len(fill) == 1 else None
        self.mean = np.asarray([float(v) for v in config["mean"]], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray([float(v) for v in config["std"]], dtype=np.float32).reshape(3, 1, 1)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The framed uint8 pixels: (H, W) for a greyscale image on the fast path, else (H, W, 3)."""
        image = to_8bit(image)
        if image.mode == "L" and self.grey_geometry is not None:
            return np.asarray(self.grey_geometry(image))
        return np.asarray(self.rgb_geometry(to_rgb(image)))

    def normalise(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (H, W) or (H, W, 3) -> float (3, H, W): ToTensor's /255 then Normalize's (x - mean) / std.

        In NumPy float32, the same correctly rounded operations in the same order as torchvision, so the same
        values; unlike torch's, NumPy's elementwise ops start no thread pool, which on a busy machine turned a
        0.1 ms normalisation into tens of milliseconds of threads waiting for each other."""
        planes = pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))
        x = planes.astype(np.float32) / np.float32(255)
        return torch.from_numpy((x - self.mean) / self.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalise(self.pixels(image))

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, framing={framing_of(self.config)!r})"


def timm_eval_transform(config: dict):
    """timm's own eval transform after to_rgb (the reference EvalTransform reproduces; benchmarks time both)."""
    height, width = _size(config)
    evaluation = create_transform(
        input_size=(3, height, width),
        is_training=False,
        interpolation=str(config.get("interpolation", "bicubic")),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        crop_pct=config.get("crop_pct"),
        crop_mode=config.get("crop_mode"),
    )
    return v2.Compose([v2.Lambda(to_rgb), evaluation])


def build_transform(config: dict, train: bool = False, augment: dict | None = None):
    """A callable PIL image -> float tensor (3, H, W), normalised per config; greyscale becomes RGB (3 channels).

    Eval is timm's eval transform (resize, crop per crop_pct/crop_mode), as EvalTransform computes it. Train applies
    `augment` (keys of DEFAULT_AUGMENT, missing ones take the defaults) with torchvision.transforms.v2.
    """
    height, width = _size(config)
    interpolation = str(config.get("interpolation", "bicubic"))
    if not train:
        return EvalTransform(config)
    settings = _augment_settings(augment)
    steps: list = [v2.Lambda(to_rgb)]
    if settings["random_resized_crop"]:
        steps.append(
            v2.RandomResizedCrop(
                (height, width), scale=settings["random_resized_crop"], interpolation=InterpolationMode(interpolation)
            )
        )
    else:
        steps += _eval_geometry(config)  # the same geometry as evaluation (timm's resize + crop)
    if settings["hflip"]:
        steps.append(v2.RandomHorizontalFlip())
    if settings["vflip"]:
        steps.append(v2.RandomVerticalFlip())
    if settings["rotate_deg"]:
        steps.append(v2.RandomRotation(float(settings["rotate_deg"]), interpolation=InterpolationMode.BILINEAR))
    if settings["brightness"] or settings["contrast"]:
        steps.append(v2.ColorJitter(brightness=float(settings["brightness"]), contrast=float(settings["contrast"])))
    return v2.Compose(steps + _normalise(config))


# Acquisition augmentation for cached-feature training: each extra "view" of a training image is the image as
# another site's export pipeline might deliver it (resampled with another filter and size, re-encoded as JPEG,
# slightly different contrast, brightness and gamma, a small tilt). Their features are cached like the original's,
# so a features-mode head learns invariance to what real test sets change, at no backbone cost after the first run.
ACQUISITION_AUGMENT = {
    "resize_scale": (0.35, 1.0),     # intermediate size, as a fraction of the original's sides
    "squash_to_input": 0.5,          # probability that the intermediate is the model's square input size instead
    "filters": ("nearest", "bilinear", "bicubic", "lanczos", "box"),
    "jpeg_quality": (60, 95),
    "contrast": 0.15,
    "brightness": 0.10,
    "gamma": 0.15,
    "rotate_deg": 5.0,
}
_PIL_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                "lanczos": Image.LANCZOS, "box": Image.BOX}


def _view_seed(image: Image.Image, view: int, seed: int) -> int:
    """A seed from the pixels themselves: the same image always gets the same view, whichever worker draws it."""
    import zlib

    small = np.asarray(image.convert("L").resize((32, 32), Image.BILINEAR))
    return (zlib.crc32(small.tobytes()) * 1_000_003 + int(view) * 7919 + int(seed)) % (2**32)


def acquisition_view(image: Image.Image, view: int, input_hw: tuple[int, int], seed: int = 0,
                     settings: dict | None = None) -> Image.Image:
    """View `view` (1, 2, ...) of an 8-bit image (to_8bit's) as another acquisition/export pipeline would deliver it.

    A greyscale ("L") image is processed as its one plane and its view is greyscale: the same pixels as the view of
    its RGB copy in each channel (PIL resamples, rotates and JPEG-codes a grey RGB image channel by channel alike;
    the Y of a grey RGB pixel is its value and its chroma is neutral), at under half the work.
    """
    import io

    s = {**ACQUISITION_AUGMENT, **(settings or {})}
    rng = np.random.default_rng(_view_seed(image, view, seed))
    width, height = image.size
    if rng.random() < float(s["squash_to_input"]):
        size = (int(input_hw[1]), int(input_hw[0]))
    else:
        scale = rng.uniform(*s["resize_scale"])
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
    image = image.resize(size, _PIL_FILTERS[str(rng.choice(list(s["filters"])))])
    angle = rng.uniform(-1, 1) * float(s["rotate_deg"])
    if angle:
        image = image.rotate(angle, resample=Image.BILINEAR, fillcolor=0 if image.mode == "L" else (0, 0, 0))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    gamma = float(np.exp(rng.uniform(-1, 1) * float(s["gamma"])))
    pixels = pixels ** gamma
    contrast = 1.0 + rng.uniform(-1, 1) * float(s["contrast"])
    brightness = rng.uniform(-1, 1) * float(s["brightness"])
    # The mean of the RGB image, summed in NumPy's order for it (a grey plane's own mean can differ in its last bit,
    # flip one pixel's rounding, and the JPEG spreads that over its block).
    mean = (np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels).mean()
    pixels = (pixels - mean) * contrast + mean + brightness
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(s["jpeg_quality"][0], s["jpeg_quality"][1] + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("L" if image.mode == "L" else "RGB")


def view_preprocessing(config: dict, view: int, seed: int = 0, settings: dict | None = None) -> dict:
    """The preprocess config that identifies view `view` (it keys that view's feature cache)."""
    if int(view) == 0:
        return dict(config)
    spec = {k: list(v) if isinstance(v, tuple) else v for k, v in {**ACQUISITION_AUGMENT, **(settings or {})}.items()}
    return {**config, "view": int(view), "view_seed": int(seed), "acquisition": spec}


def build_view_transform(config: dict, view: int, seed: int = 0, settings: dict | None = None):
    """The eval transform (view 0) or acquisition view `view` >= 1 followed by it: PIL image -> tensor."""
    evaluation = build_transform(config, train=False)
    if int(view) == 0:
        return evaluation
    input_hw = _size(config)
    return v2.Compose([v2.Lambda(to_8bit), v2.Lambda(lambda im: acquisition_view(im, view, input_hw, seed, settings)),
                       evaluation])
