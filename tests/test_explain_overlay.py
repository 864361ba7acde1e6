"""Maps back onto the original image (inverting timm's eval preprocessing) and drawn over it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from core.errors import InputError
from core.explain import colorbar, explain, input_geometry, map_to_image, shared_scale
from core.explain.overlay import overlay


def smooth_image(width: int, height: int) -> np.ndarray:
    """A smooth, asymmetric grey image in 0..1 (so resampling errors stay small and flips would show)."""
    y, x = np.mgrid[0:height, 0:width]
    return 0.5 + 0.3 * np.sin(x / width * 10.0) * np.cos(y / height * 6.0) + 0.1 * x / width


@pytest.mark.parametrize("crop_mode,crop_pct", [("center", 0.875), ("squash", 0.95), ("border", 1.0),
                                                ("center", 1.0)])
@pytest.mark.parametrize("width,height", [(120, 80), (70, 101)])
def test_map_to_image_inverts_the_timm_eval_transform(crop_mode, crop_pct, width, height):
    grey = smooth_image(width, height)
    original = Image.fromarray((grey * 255).round().astype(np.uint8)).convert("RGB")
    config = {"input_size": (3, 48, 48), "crop_pct": crop_pct, "crop_mode": crop_mode,
              "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    transform = create_transform(input_size=config["input_size"], is_training=False, interpolation="bilinear",
                                 mean=config["mean"], std=config["std"], crop_pct=crop_pct, crop_mode=crop_mode)
    tensor = transform(original)
    back = map_to_image(tensor.mean(dim=0).numpy(), (width, height), config)
    assert back.shape == (height, width)
    seen = np.isfinite(back)
    # what the crop cut away (in original pixels) is NaN, the rest is seen
    geo = input_geometry((width, height), config, (48, 48))
    lost_x = max(geo.offset[0], 0) * width / geo.resized[0]
    lost_y = max(geo.offset[1], 0) * height / geo.resized[1]
    if crop_mode == "center" and crop_pct == 0.875 and width > height:
        assert lost_x > 10  # the sides of a wide image are cut by the centre crop
    margin_x, margin_y = math.ceil(lost_x) + 1, math.ceil(lost_y) + 1
    assert seen[margin_y: height - margin_y, margin_x: width - margin_x].all()
    assert not seen[:, : max(int(lost_x) - 1, 0)].any() and not seen[: max(int(lost_y) - 1, 0)].any()
    if lost_x == 0 and lost_y == 0:
        assert seen.all()
    error = np.abs(back[seen] - grey[seen])
    # exact geometry leaves only resampling error; half an input pixel off already gives > 0.006 median
    assert np.median(error) < 0.003 and np.percentile(error, 95) < 0.01


def test_explain_with_output_size_gives_a_map_on_the_original_image():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten())
    config = {"input_size": (3, 32, 32), "crop_pct": 1.0, "crop_mode": "center", "mean": (0.5,) * 3,
              "std": (0.5,) * 3}
    amap = explain(model, torch.randn(1, 3, 32, 32), 0, "occlusion", window=8, stride=8, output_size=(64, 40),
                   preprocess=config)
    assert amap.map.shape == (40, 64) and amap.output_size == (64, 40) and amap.input_size == (32, 32)
    assert np.isnan(amap.map[:, :5]).all() and np.isfinite(amap.map[:, 20:44]).all()


def test_overlay_blends_colour_only_where_there_is_evidence():
    image = Image.fromarray(np.full((20, 30), 128, dtype=np.uint8))  # grayscale scan
    values = np.zeros((20, 30))
    values[5:10, 5:10] = 1.0
    values[15, 25] = np.nan
    out = overlay(image, values, opacity=0.6)
    assert out.mode == "RGB" and out.size == (30, 20)
    pixels = np.asarray(out)
    assert (pixels[0, 0] == 128).all() and (pixels[15, 25] == 128).all()  # no evidence, NaN: image untouched
    assert not (pixels[7, 7] == 128).all()
    uniform = np.asarray(overlay(image, values, opacity=0.6, fade_low=False))
    assert not (uniform[0, 0] == 128).all()  # uniform opacity colours everything seen
    assert (np.asarray(overlay(image, values, opacity=0.0)) == 128).all()
    # a smaller map is resized to the image
    assert overlay(image, values[::2, ::2]).size == (30, 20)


def test_shared_scale_puts_two_maps_on_one_colour_scale():
    weak = np.zeros((10, 10))
    weak[2, 2] = 0.1
    strong = np.zeros((10, 10))
    strong[2, 2] = 1.0
    vmin, vmax = shared_scale([weak, strong], percentile=100)
    assert (vmin, vmax) == (0.0, 1.0)
    image = np.full((10, 10), 100, dtype=np.uint8)
    own = np.asarray(overlay(image, weak))  # own scale: the weak peak looks as strong as any
    shared = np.asarray(overlay(image, weak, vmin=vmin, vmax=vmax))
    assert np.abs(own[2, 2].astype(int) - 100).sum() > np.abs(shared[2, 2].astype(int) - 100).sum()


def test_overlay_input_errors_and_colorbar():
    with pytest.raises(InputError, match="opacity"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), opacity=2)
    with pytest.raises(InputError, match="colormap"):
        overlay(np.zeros((4, 4)), np.ones((4, 4)), colormap="no-such-map")
    with pytest.raises(InputError, match="vmax > vmin"):
        overlay(np.zeros((4, 4)), np.ones((4, 4)), vmin=1, vmax=1)
    bar = np.asarray(colorbar(height=50, width=4)).astype(int)
    assert bar.shape == (50, 4, 3)
    assert bar[0].sum() > bar[-1].sum()  # inferno: light at the top (vmax), dark at the bottom
