"""Explaining never leaves a shared model changed: hooks, requires_grad and train/eval restored, even on errors."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import nn

from core.explain import compute_maps, explain, hook_counts

HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


def snapshot(model: nn.Module) -> dict:
    return {
        "training": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "hooks": [(name, table, tuple(getattr(m, table)))
                  for name, m in model.named_modules() for table in HOOK_TABLES],
        "full_backward": [(name, m._is_full_backward_hook) for name, m in model.named_modules()],
        "grads": [(name, p.grad is None) for name, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for key in ("training", "requires_grad", "hooks", "full_backward", "grads"):
        assert after[key] == before[key], key
    for name, value in before["state"].items():  # e.g. batch-norm running stats untouched
        assert torch.equal(after["state"][name], value), name
    assert sum(hook_counts(model).values()) == sum(len(h[2]) for h in before["hooks"])


class Flaky(nn.Module):
    """A cached model whose forward raises when asked to (as a broken checkpoint or bad input would)."""

    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = timm.create_model("test_resnet", pretrained=False, num_classes=3)
        self.fail = False

    def forward(self, x):
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return self.net(x)


@pytest.fixture(scope="module")
def shared_model():
    """One model object reused by every test here, as the dashboard's model cache would."""
    torch.manual_seed(0)
    return Flaky()


def _mixed_flags(model: nn.Module, start: str) -> None:
    model.train() if start == "train" else model.eval()
    model.fail = False
    # a user's own state that must survive: some parameters frozen, others not
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i % 3 != 0)


@pytest.mark.parametrize("start", ["train", "eval"])
@pytest.mark.parametrize("method,params", [("occlusion", {"window": 16, "stride": 16}), ("gradcam", {}),
                                           ("gradcam", {"guided": True})])
def test_explain_restores_the_shared_model(shared_model, start, method, params):
    _mixed_flags(shared_model, start)
    own_hook = shared_model.net.layer1.register_forward_hook(lambda m, i, o: None)
    try:
        before = snapshot(shared_model)
        for _ in range(2):  # the same cached object across calls
            explain(shared_model, torch.randn(1, 3, 32, 32), 1, method, **params)
            assert_unchanged(shared_model, before)
    finally:
        own_hook.remove()


@pytest.mark.parametrize("start", ["train", "eval"])
@pytest.mark.parametrize("method,params", [("occlusion", {"window": 16, "stride": 16}), ("gradcam", {}),
                                           ("gradcam", {"guided": True})])
def test_explain_restores_the_model_when_the_forward_raises(shared_model, start, method, params):
    _mixed_flags(shared_model, start)
    before = snapshot(shared_model)
    # a wrong input: one channel into a three-channel stem, raised inside torch during the attribution
    with pytest.raises(RuntimeError):
        explain(shared_model, torch.randn(1, 1, 32, 32), 1, method, **params)
    assert_unchanged(shared_model, before)
    # a forward that raises itself
    shared_model.fail = True
    try:
        with pytest.raises(RuntimeError, match="on purpose"):
            explain(shared_model, torch.randn(1, 3, 32, 32), 1, method, **params)
    finally:
        shared_model.fail = False
    assert_unchanged(shared_model, before)
    # and it still explains afterwards
    explain(shared_model, torch.randn(1, 3, 32, 32), 1, method, **params)
    assert_unchanged(shared_model, before)


def test_gradcam_layer_that_raises_mid_attribution_leaves_no_hooks(shared_model):
    """The raise happens after our grid hook and Captum's hooks are registered (inside the layer's forward)."""
    _mixed_flags(shared_model, "eval")
    before = snapshot(shared_model)
    layer4 = shared_model.net.layer4
    boom = layer4.register_forward_pre_hook(lambda m, i: (_ for _ in ()).throw(RuntimeError("layer broke")))
    try:
        with_boom = snapshot(shared_model)
        with pytest.raises(RuntimeError, match="layer broke"):
            explain(shared_model, torch.randn(1, 3, 32, 32), 0, "gradcam", guided=True)
        assert_unchanged(shared_model, with_boom)
    finally:
        boom.remove()
    assert_unchanged(shared_model, before)


def test_compute_maps_restores_the_model_and_reports_progress(shared_model):
    _mixed_flags(shared_model, "train")
    before = snapshot(shared_model)
    seen = []
    images = [(f"img{i}", torch.randn(3, 32, 32), i % 3) for i in range(3)]
    maps = compute_maps(shared_model, images, "gradcam", progress=lambda done, total: seen.append((done, total)))
    assert list(maps) == ["img0", "img1", "img2"]
    assert [m.target for m in maps.values()] == [0, 1, 2]
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert_unchanged(shared_model, before)
    stopped = compute_maps(shared_model, images, "gradcam", should_stop=lambda: True)
    assert stopped == {}
