"""The on-disk map cache: a second request is a hit without touching the model; keys separate what differs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InputError
from core.explain import MapCache, compute_maps, explain, map_key
from core.store.integrity import DamagedCacheWarning


class CountingModel(nn.Module):
    """Counts forward calls, so a cache hit can be proven by the model never running."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CountingModel()


def test_second_request_is_a_hit_without_running_the_model(tmp_path, model):
    cache = MapCache(tmp_path / "maps")
    image = torch.rand(1, 3, 24, 24)
    first = explain(model, image, 1, "occlusion", window=8, stride=4, cache=cache, model_id="run-1:abc",
                    output_size=(30, 20))
    assert model.calls > 0 and cache.misses == 1 and cache.hits == 0
    calls = model.calls
    second = explain(model, image.clone(), 1, "occlusion", window=8, stride=4, cache=cache, model_id="run-1:abc",
                     output_size=(30, 20))
    assert model.calls == calls and cache.hits == 1
    assert second.info["cache"] == "hit"
    np.testing.assert_array_equal(second.map, first.map)
    np.testing.assert_array_equal(second.raw, first.raw)
    assert (second.method, second.target, second.params, second.input_size, second.output_size) == (
        first.method, first.target, first.params, first.input_size, first.output_size)
    assert second.probability == pytest.approx(first.probability)
    # the speed knob does not change the key
    explain(model, image, 1, "occlusion", window=8, stride=4, perturbations_per_eval=3, cache=cache,
            model_id="run-1:abc", output_size=(30, 20))
    assert model.calls == calls and cache.hits == 2
    # files are safetensors, one per key, no leftovers from the atomic write
    files = sorted(p.name for p in (tmp_path / "maps").rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].endswith(".safetensors")


def test_anything_that_shapes_the_map_changes_the_key(tmp_path, model):
    image = torch.rand(1, 3, 24, 24)
    base = dict(model_id="m1", image=image, method="occlusion", params={"window": 8}, target=0)
    key = map_key(**base)
    assert map_key(**base) == key
    assert map_key(**{**base, "image": image.clone()}) == key  # content, not object identity
    for change in ({"model_id": "m2"}, {"image": image + 1e-3}, {"method": "gradcam"},
                   {"params": {"window": 12}}, {"target": 1}, {"output_size": (30, 20)},
                   {"preprocess": {"crop_pct": 0.9}}):
        assert map_key(**{**base, **change}) != key, change


def test_compute_maps_uses_the_cache_for_the_gallery(tmp_path, model):
    cache = MapCache(tmp_path / "maps")
    images = [(f"img{i}", torch.rand(3, 24, 24), i % 3) for i in range(3)]
    first = compute_maps(model, images, "gradcam", {}, cache, model_id="m1")
    calls = model.calls
    second = compute_maps(model, images, "gradcam", {}, cache, model_id="m1")
    assert model.calls == calls and cache.hits == 3
    for image_id in first:
        np.testing.assert_array_equal(first[image_id].map, second[image_id].map)
    with pytest.raises(InputError, match="model_id"):
        compute_maps(model, images, "gradcam", {}, cache)


def test_a_damaged_cache_file_is_recomputed(tmp_path, model):
    cache = MapCache(tmp_path / "maps")
    image = torch.rand(1, 3, 24, 24)
    explain(model, image, 0, "gradcam", cache=cache, model_id="m1")
    (path,) = list((tmp_path / "maps").rglob("*.safetensors"))
    path.write_bytes(b"not a safetensors file")
    calls = model.calls
    with pytest.warns(DamagedCacheWarning, match="damaged cache entry"):
        amap = explain(model, image, 0, "gradcam", cache=cache, model_id="m1")
    assert model.calls > calls and "cache" not in amap.info
    assert cache.get(path.stem) is not None  # rewritten whole
    assert cache.clear() == 1
