"""Framing (squash / letterbox / centre crop): one preprocessing for training, inference, explanation and cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InputError
from core.explain.geometry import map_to_image
from core.models import (
    DEFAULT_FRAMING,
    FRAMINGS,
    build_transform,
    framing_of,
    preprocess_config,
)
from core.models.preprocess import (
    acquisition_view,
    build_view_transform,
    stated_preprocess_config,
    timm_eval_transform,
    to_rgb,
)
from core.train import RunConfig, run_training
from core.train.config import RunConfig as Config
from tests.train_fixtures import TINY, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*random init.*:UserWarning")

LITE0 = "tf_efficientnet_lite0"


def _landscape_with_square(width=400, height=200, box=(330, 60, 370, 100)) -> Image.Image:
    """A dark landscape film with one bright square near its right edge (where a centre crop cuts)."""
    pixels = np.full((height, width), 20, np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 250
    return Image.fromarray(pixels, "L")


def test_framings_set_timm_crop_mode_and_keep_the_whole_image():
    assert DEFAULT_FRAMING == "squash" and set(FRAMINGS) == {"squash", "letterbox", "center"}
    squash = preprocess_config(LITE0, framing="squash")
    assert (squash["crop_mode"], squash["crop_pct"], squash["framing"]) == ("squash", 1.0, "squash")
    letterbox = preprocess_config(LITE0, framing="letterbox")
    assert (letterbox["crop_mode"], letterbox["crop_pct"]) == ("border", 1.0)
    center = preprocess_config(LITE0, framing="center")
    assert center["crop_mode"] == "center" and center["crop_pct"] == pytest.approx(0.875)
    assert [framing_of(c) for c in (squash, letterbox, center)] == ["squash", "letterbox", "center"]
    # Configs written before framings existed say only timm's crop mode.
    assert framing_of({"crop_mode": "center", "crop_pct": 0.875}) == "center"
    with pytest.raises(InputError, match="framing must be one of"):
        preprocess_config(LITE0, framing="zoom")
    with pytest.raises(InputError, match="framing"):
        Config(framing="zoom")


@pytest.mark.parametrize("framing", ["squash", "letterbox"])
def test_whole_image_framings_keep_the_lateral_edges(framing):
    image = _landscape_with_square()
    x = build_transform(preprocess_config(LITE0, framing=framing))(image)
    assert x.shape == (3, 224, 224)
    # The square near the right edge survives (bright pixels, +1 after the lite0 [-1, 1] normalisation)...
    assert float(x[0, :, 180:].max()) > 0.9
    # ...while the ImageNet centre crop of the same film cuts it away.
    cropped = build_transform(preprocess_config(LITE0, framing="center"))(image)
    assert float(cropped[0].max()) < 0.0


@pytest.mark.parametrize("framing", ["squash", "letterbox", "center"])
def test_a_map_computed_on_the_input_lands_on_the_original_pixels(framing):
    """What explain does: a map in model-input coordinates (here the input's own brightness) is carried back onto
    the landscape original by core.explain.geometry; its peak must sit on the bright square."""
    box = (180, 80, 220, 120) if framing == "center" else (330, 60, 370, 100)  # centre crop keeps only the middle
    image = _landscape_with_square(box=box)
    config = preprocess_config(LITE0, framing=framing)
    x = build_transform(config)(image)
    on_original = map_to_image(x[0].numpy(), image.size, config)
    assert on_original.shape == (image.size[1], image.size[0])
    y, xx = np.unravel_index(np.nanargmax(on_original), on_original.shape)
    x0, y0, x1, y1 = box
    assert x0 - 2 <= xx < x1 + 2 and y0 - 2 <= y < y1 + 2
    inside = np.nanmean(on_original[y0 + 4:y1 - 4, x0 + 4:x1 - 4])
    outside = np.nanmean(on_original[:, :x0 - 10])
    assert inside > 0.8 and outside < -0.5
    if framing == "center":
        assert np.isnan(on_original[:, :10]).all()  # the cropped-away sides have no attribution
    else:
        assert not np.isnan(on_original).any()


def test_training_records_the_framing_in_the_card_and_the_cache_key(oct_folder, workspace, tmp_path):
    base = dict(data=str(oct_folder), mode="features", **TINY)
    squash = run_training(RunConfig(**base), tmp_path / "s", workspace)
    letterbox = run_training(RunConfig(**base, framing="letterbox"), tmp_path / "l", workspace)
    assert squash["feature_cache"]["key"] != letterbox["feature_cache"]["key"]
    card = json.loads((tmp_path / "l" / "checkpoint" / "model_card.json").read_text())
    assert card["preprocessing"]["framing"] == "letterbox" and card["preprocessing"]["crop_mode"] == "border"
    config = json.loads((tmp_path / "l" / "config.json").read_text())
    assert config["framing"] == "letterbox"


def test_version_1_configs_keep_their_recipe():
    old = {"data": "", "mode": "features", "version": 1}
    cfg = Config.from_dict(old)
    assert (cfg.framing, cfg.head_fit, cfg.views) == ("center", "adam", 0)
    assert (Config().framing, Config().head_fit) == ("squash", "logistic")


def _smooth_grey(width: int, height: int, seed: int) -> Image.Image:
    """A film-like greyscale image: smooth shading plus noise (not flat, so every resampling weight matters)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = 120 + 80 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + rng.normal(0, 20, (height, width))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_the_eval_transform_gives_timms_pixels_on_its_greyscale_path(framing):
    """EvalTransform frames a greyscale image as one plane and normalises it in NumPy: the very floats timm's own
    transform gives after to_rgb, for grey, colour and 16-bit images, with a grey mean (the Lite models', where the
    letterbox pad is grey too) and ImageNet's (its colour pad sends greyscale the RGB way)."""
    rng = np.random.default_rng(1)
    images = [_smooth_grey(61, 27, 0), _smooth_grey(19, 40, 1),
              Image.fromarray(rng.integers(0, 256, (40, 23, 3), dtype=np.uint8), "RGB"),
              Image.fromarray(rng.integers(0, 4096, (20, 30)).astype(np.uint16))]
    configs = [preprocess_config(LITE0, 32, framing=framing),
               stated_preprocess_config((24, 36), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                        interpolation="bilinear", framing=framing)]
    for config in configs:
        ours, timms = build_transform(config), timm_eval_transform(config)
        for image in images:
            x = ours(image)
            assert x.dtype == torch.float32 and x.shape == (3, *config["input_size"][1:]) and x.is_contiguous()
            assert torch.equal(x, timms(image)), (config["mean"], image.mode, image.size)


def test_a_greyscale_acquisition_view_is_the_view_of_its_rgb_copy():
    """Views of a greyscale image are computed on its one plane; each must equal, pixel for pixel, the view of
    its RGB copy (the path every view took before), for both intermediate sizes and every filter drawn."""
    config = preprocess_config(LITE0, 32, framing=DEFAULT_FRAMING)
    for seed, image in enumerate([_smooth_grey(90, 70, 2), _smooth_grey(64, 100, 3)]):
        for view in (1, 2, 3):
            for settings in ({"squash_to_input": 0.0}, {"squash_to_input": 1.0}):
                grey = acquisition_view(image, view, (32, 32), seed, settings)
                rgb = acquisition_view(to_rgb(image), view, (32, 32), seed, settings)
                assert grey.mode == "L" and rgb.mode == "RGB"
                assert np.array_equal(np.asarray(grey.convert("RGB")), np.asarray(rgb))
        transform = build_view_transform(config, 1, seed)
        before = timm_eval_transform(config)(acquisition_view(to_rgb(image), 1, (32, 32), seed))
        assert torch.equal(transform(image), before)
