"""Occlusion and Grad-CAM: shapes and ranges on tiny models, localisation on hand-built models, ViT tokens."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
from torch import nn

from core.errors import InputError
from core.explain import (
    AttributionMap,
    default_gradcam_layer,
    explain,
    get_explainer,
    list_explainers,
    window_count,
)
from core.explain.registry import explainer_names


def tiny(name: str, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)


class PatchModel(nn.Module):
    """Class 0's logit is 10 x (mean of one fixed patch of the image - 0.5); class 1's is 0."""

    def __init__(self, rows=slice(8, 20), cols=slice(24, 40)):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        patch = x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([self.scale * (patch - 0.5), torch.zeros_like(patch)], dim=1)


class BrightnessCNN(nn.Module):
    """A conv layer that responds to brightness, pooled into class 0: Grad-CAM must follow the bright blob."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / 27)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


# The parameter sets a method's own checks below need; every other registered method runs once with its defaults, so
# a new explainer is covered without an edit here.
_VARIANTS = {"occlusion": ({"window": 16, "stride": 16},), "gradcam": ({}, {"guided": True})}
_CASES = [(e.name, params) for e in list_explainers() for params in _VARIANTS.get(e.name, ({},))]


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
@pytest.mark.parametrize("method,params", _CASES, ids=[f"{m}-{'-'.join(p) or 'defaults'}" for m, p in _CASES])
def test_shapes_and_ranges_on_tiny_models(name, method, params):
    model = tiny(name)
    image = torch.randn(1, 3, 48, 64)
    amap = explain(model, image, 2, method, **params)
    assert isinstance(amap, AttributionMap)
    assert amap.map.shape == (48, 64) and amap.map.dtype == np.float32
    assert amap.input_size == (48, 64) and amap.output_size is None
    assert np.isfinite(amap.map).all() and np.isfinite(amap.raw).all()
    assert 0.0 <= amap.probability <= 1.0
    assert amap.method == method and amap.target == 2
    if method == "occlusion":
        assert amap.raw.shape == (3, 48, 64)
        # a drop in probability lies in [-1, 1]
        assert np.abs(amap.map).max() <= 1.0
        assert amap.params["window"] == 16 and amap.params["stride"] == 16 and amap.params["baseline"] == "black"
    elif method == "gradcam" and not params.get("guided"):
        assert amap.raw.ndim == 2 and amap.raw.shape[0] < 48
        assert amap.map.min() >= 0.0  # relu=True by default, as in the original Grad-CAM
        assert amap.params["layer"] == default_gradcam_layer(model)


def test_occlusion_map_peaks_in_the_only_region_the_model_looks_at():
    model = PatchModel()
    image = torch.rand(1, 3, 48, 48) * 0.5 + 0.5  # positive pixels: hiding them (black) lowers class 0
    amap = explain(model, image, 0, "occlusion", window=8, stride=4)
    y, x = np.unravel_index(np.argmax(amap.map), amap.map.shape)
    assert 8 <= y < 20 and 24 <= x < 40
    assert amap.map[y, x] > 0.05
    # windows that never touch the patch change nothing: zero outside the patch's reach (window 8)
    far = np.ones_like(amap.map, dtype=bool)
    far[8 - 7:20 + 7, 24 - 7:40 + 7] = False
    assert np.abs(amap.map[far]).max() < 1e-6
    # p(occluded) < p(original) inside: the map is the probability drop, so it is positive there
    assert amap.map[8:20, 24:40].mean() > 0


@pytest.mark.parametrize("baseline", ["black", "mean", "blur"])
def test_occlusion_baselines(baseline):
    model = PatchModel()
    image = torch.rand(1, 3, 48, 48) * 0.5 + 0.5
    amap = explain(model, image, 0, "occlusion", window=8, stride=8, baseline=baseline,
                   preprocess={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    assert amap.params["baseline"] == baseline
    assert np.isfinite(amap.map).all()
    if baseline == "black":
        # black pixels normalise to -1 with mean = std = 0.5: a strong drop inside the patch
        assert amap.map[8:20, 24:40].max() > 0.3


def test_gradcam_follows_the_bright_region():
    model = BrightnessCNN()
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 4:12, 20:28] = 1.0  # top-right blob: catches transposed or flipped maps
    amap = explain(model, image, 0, "gradcam", layer="act")
    y, x = np.unravel_index(np.argmax(amap.map), amap.map.shape)
    assert 4 <= y < 12 and 20 <= x < 28
    assert amap.map[20:, :12].max() < 0.1 * amap.map.max()


def test_gradcam_default_layer_falls_back_to_last_conv_and_is_overridable():
    model = BrightnessCNN()
    assert default_gradcam_layer(model) == "conv"
    assert explain(model, torch.rand(1, 3, 16, 16), 0, "gradcam").params["layer"] == "conv"
    with pytest.raises(InputError, match="not in the model"):
        explain(model, torch.rand(1, 3, 16, 16), 0, "gradcam", layer="conv9")


def test_default_layers_match_the_backbone_registry():
    from core.models import create_model, list_backbones

    for spec in list_backbones():
        with torch.device("meta"):  # structure only: no weights to initialise
            if spec.members:  # a feature ensemble is built by core.models, not timm
                model = create_model(spec.name, 2, pretrained=False)
            else:
                model = timm.create_model(spec.timm_name, pretrained=False, num_classes=2, **dict(spec.timm_kwargs))
        assert default_gradcam_layer(model) == spec.gradcam_layer, spec.name


def test_vit_gradcam_reshapes_patch_tokens_to_the_grid():
    model = tiny("test_vit").eval()
    assert default_gradcam_layer(model) == "blocks.5.norm1"
    image = torch.randn(1, 3, 160, 160)
    amap = explain(model, image, 1, "gradcam", relu=False)
    assert amap.raw.shape == (10, 10) and amap.map.shape == (160, 160)
    assert np.abs(amap.raw).max() > 0

    # the same Grad-CAM by hand: channel weights = patch-averaged gradients of the logit at norm1's tokens
    captured = {}
    layer = model.get_submodule("blocks.5.norm1")
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    try:
        logit = model(image)[0, 1]
        tokens = captured["tokens"]
        grads = torch.autograd.grad(logit, tokens)[0]
    finally:
        handle.remove()
    prefix = model.num_prefix_tokens
    weights = grads[0, prefix:].mean(dim=0)
    expected = (tokens[0, prefix:] * weights).sum(dim=1).reshape(10, 10).detach().numpy()
    np.testing.assert_allclose(amap.raw, expected, rtol=1e-4, atol=1e-6)


def test_params_are_validated_with_input_errors():
    model = PatchModel()
    image = torch.rand(1, 3, 48, 48)
    with pytest.raises(InputError, match="no parameter 'windw'"):
        explain(model, image, 0, "occlusion", windw=8)
    with pytest.raises(InputError, match="stride"):
        explain(model, image, 0, "occlusion", window=8, stride=9)
    with pytest.raises(InputError, match="window"):
        explain(model, image, 0, "occlusion", window=64)
    with pytest.raises(InputError, match="baseline"):
        explain(model, image, 0, "occlusion", baseline="white")
    with pytest.raises(InputError, match="unknown explanation method"):
        explain(model, image, 0, "lime")
    with pytest.raises(InputError, match="outside the model's 2 classes"):
        explain(model, image, 5, "occlusion")
    with pytest.raises(InputError, match=r"\(1, C, H, W\)"):
        explain(model, torch.rand(2, 3, 48, 48), 0, "occlusion")


def test_registry_describes_every_method():
    names = [e.name for e in list_explainers()]
    assert names and len(set(names)) == len(names) and explainer_names() == names
    for explainer in list_explainers():
        assert get_explainer(explainer.name) is explainer  # each is found under its own name
        assert explainer.title and explainer.description
        assert {"multilabel"} <= {p.name for p in explainer.params}
    assert get_explainer("occlusion").speed_only_params() == {"perturbations_per_eval"}
    assert get_explainer("occlusion").resolve_params({"window": "12", "baseline": "mean"}) == {
        "window": 12, "baseline": "mean"}


def test_window_count_matches_captum_and_multilabel_uses_sigmoid():
    assert window_count((224, 224), 20, 20) == 12 * 12
    assert window_count((224, 224), 20, 10) == 22 * 22
    assert window_count((224, 224), 20, 4) == 52 * 52
    model = PatchModel()
    image = torch.rand(1, 3, 48, 48)
    soft = explain(model, image, 1, "occlusion", window=16, stride=16)
    sig = explain(model, image, 1, "occlusion", window=16, stride=16, multilabel=True)
    logit = 10 * (image[0, :, 8:20, 24:40].mean().item() - 0.5)
    assert soft.probability == pytest.approx(1 / (1 + np.exp(logit)), rel=1e-5)
    assert sig.probability == pytest.approx(0.5)  # logit 0
    assert sig.params["multilabel"] is True


def test_every_registered_method_carries_its_cost_model_and_widget_hints():
    import subprocess
    import sys

    for explainer in list_explainers():
        assert callable(explainer.compute)  # its "module:function" resolves
        assert explainer.forward_passes((64, 64), {}) >= 1
        assert explainer.map_unit
        assert all(spec.label for spec in explainer.params)
        assert any(not spec.hidden for spec in explainer.params)  # the UI offers something to set
    # Occlusion costs one pass per window; a finer grid costs more, as its window count says.
    occlusion = get_explainer("occlusion")
    assert occlusion.forward_passes((224, 224), {"window": 20, "stride": 10, "refine_regions": 0}) == window_count(
        (224, 224), 20, 10)
    # coarse-to-fine (the default) where it is cheaper: fewer passes than the full grid, more with more regions
    assert occlusion.forward_passes((224, 224), {"window": 20, "stride": 10}) < window_count((224, 224), 20, 10)
    assert occlusion.forward_passes((224, 224), {"refine_regions": 2}) < occlusion.forward_passes((224, 224), {})
    assert occlusion.forward_passes((64, 64), {"window": 8, "refine_regions": 0}) == window_count((64, 64), 8, 4)
    assert get_explainer("gradcam").forward_passes((64, 64), {"guided": True}) == 2 * get_explainer(
        "gradcam").forward_passes((64, 64), {})
    assert get_explainer("gradcam").at_once and not occlusion.at_once
    # The registry is the CLI's source of names, so it must not load torch.
    code = "import sys, core.explain.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
