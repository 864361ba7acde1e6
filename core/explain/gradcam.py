"""Grad-CAM maps (Captum `LayerGradCam`, optionally guided) on an automatically chosen or named layer.

Layer choice (`default_gradcam_layer`):
- CNNs: the last feature stage timm reports (`model.feature_info[-1]['module']`, e.g. `layer4` for ResNet,
  `stages.3` for ConvNeXt); for EfficientNets the activated `conv_head` output (`bn2`) that pooling reads;
  for other models the last `Conv2d`; for a feature ensemble, its last member's layer. These agree with
  core.models' BackboneSpec.gradcam_layer.
- Vision transformers (timm ViT: `patch_embed`, `blocks`, `num_prefix_tokens`): block outputs are tokens
  (B, N, C), not feature maps. With class-token pooling the last block's patch tokens never reach the classifier
  (their gradient is zero), so the default is `blocks[-1].norm1`, the tokens entering the last attention; with
  average pooling it is `blocks[-1]`. Either way the tokens minus the prefix (class/register) tokens are reshaped
  to the patch grid (B, C, H/patch, W/patch) so Grad-CAM averages gradients over space as it does for a CNN.

How the reshape reaches Captum: a forward hook on the chosen layer routes its output through a small identity
module (`_FeatureGrid`) in grid form and returns it in the layer's own layout; Captum's layer is that module. The
model itself is never edited, and the hook lives only for one call (removed in `finally`).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from core.errors import InputError


class _FeatureGrid(nn.Module):
    """Identity on a (B, C, h, w) feature grid: the point where Captum reads activations and gradients."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


def _is_token_model(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("patch_embed", "blocks", "num_prefix_tokens"))


def default_gradcam_layer(model: nn.Module) -> str:
    """The name (as in `model.named_modules()`) of the layer Grad-CAM uses when none is given."""
    named = getattr(model, "gradcam_layer", None)
    if isinstance(named, str) and named:  # a model that names its own (an imported TorchScript chain)
        return named
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList) and len(members):
        # A feature ensemble (core.models.ensemble): the largest (last) member's layer.
        return f"members.{len(members) - 1}.{default_gradcam_layer(members[-1])}"
    if _is_token_model(model) and len(model.blocks) > 0:
        last = f"blocks.{len(model.blocks) - 1}"
        pool = getattr(model, "global_pool", "token")
        if pool == "token" and hasattr(model.blocks[-1], "norm1"):
            return f"{last}.norm1"
        return last
    if isinstance(getattr(model, "conv_head", None), nn.Conv2d) and hasattr(model, "bn2"):
        # timm EfficientNet/MobileNet: the last stage is followed by a 1x1 conv_head; bn2 (batch-norm + activation)
        # is the activated map that global pooling reads, the last convolutional layer in Grad-CAM's sense.
        return "bn2"
    feature_info = getattr(model, "feature_info", None)
    if feature_info:
        # timm keeps a list of dicts on plain models and a FeatureInfo object on features_only ones
        entries = feature_info.info if hasattr(feature_info, "info") else feature_info
        name = entries[-1].get("module") if isinstance(entries[-1], dict) else None
        if name and _has_module(model, name):
            return name
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise InputError("Grad-CAM needs a convolutional or transformer layer; this model has none to choose "
                         "automatically: name one with layer=...")
    return convs[-1]


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def resolve_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The named layer (or the default one) and its module; InputError naming close matches if it does not exist."""
    name = name or default_gradcam_layer(model)
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        stem = name.rsplit(".", 1)[0]
        near = [n for n, _ in model.named_modules() if n and n.startswith(stem)][:8]
        hint = f"; layers starting with {stem!r}: {', '.join(near)}" if near else ""
        raise InputError(f"Grad-CAM layer {name!r} is not in the model{hint}") from None


def _grid_hook(model: nn.Module, grid: _FeatureGrid, input_hw: tuple[int, int]):
    """A forward hook sending the layer output through `grid` as (B, C, h, w), returned in the layer's layout."""
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise InputError(f"Grad-CAM layer {type(module).__name__} returns {type(output).__name__}, "
                             "not one tensor; choose another layer")
        if output.dim() == 4:
            return grid(output)
        if output.dim() != 3:
            raise InputError(f"Grad-CAM needs a layer with (B, C, H, W) maps or (B, tokens, C) tokens; "
                             f"this layer gives shape {tuple(output.shape)}")
        batch, n_tokens, channels = output.shape
        n_patches = n_tokens - prefix
        h, w = _token_grid_size(n_patches, input_hw, patch)
        patches = output[:, prefix:].transpose(1, 2).reshape(batch, channels, h, w)
        patches = grid(patches).reshape(batch, channels, n_patches).transpose(1, 2)
        return torch.cat([output[:, :prefix], patches], dim=1)

    return hook


def _token_grid_size(n_patches: int, input_hw: tuple[int, int], patch) -> tuple[int, int]:
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        h, w = input_hw[0] // ph, input_hw[1] // pw
        if h * w == n_patches:
            return h, w
    side = math.isqrt(n_patches)
    if side * side == n_patches:
        return side, side
    raise InputError(f"cannot lay {n_patches} patch tokens out on a grid for a {input_hw} input")


def gradcam_attribution(model: nn.Module, batch: torch.Tensor, target: int, *, preprocess: dict | None = None,
                        layer: str | None = None, guided: bool = False, relu: bool = True,
                        multilabel: bool = False) -> dict:
    """Grad-CAM of the target's score (the logit, as in the paper by Selvaraju et al.) at `layer`, upsampled
    bilinearly to the input; `guided=True` multiplies it with guided backpropagation (Captum `GuidedGradCam`,
    which only modifies `nn.ReLU` modules). The model must already be borrowed (eval, frozen).

    Returns {'raw': (h, w) layer map (or (C, H, W) when guided), 'map': (H, W), 'params', 'info'}."""
    del preprocess, multilabel  # the logit is explained either way; they only shape other methods
    name, module = resolve_layer(model, layer)
    in_h, in_w = (int(v) for v in batch.shape[2:])
    grid = _FeatureGrid()
    started = time.perf_counter()
    # Frozen parameters: the input carries requires_grad so activations (and their gradients) exist.
    inputs = batch.clone().requires_grad_(True)
    handle = module.register_forward_hook(_grid_hook(model, grid, (in_h, in_w)))
    try:
        layer_map = LayerGradCam(model, grid).attribute(inputs, target=int(target), relu_attributions=bool(relu))
        if guided:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                guided_map = GuidedGradCam(model, grid).attribute(inputs, target=int(target),
                                                                  interpolate_mode="bilinear")
    finally:
        handle.remove()
    if guided:
        raw = guided_map[0].detach().float().cpu().numpy()
        upsampled = raw.mean(axis=0)
    else:
        raw = layer_map[0, 0].detach().float().cpu().numpy()
        upsampled = LayerAttribution.interpolate(layer_map.detach(), (in_h, in_w), interpolate_mode="bilinear")
        upsampled = upsampled[0, 0].float().cpu().numpy()
    params = {"layer": name, "guided": bool(guided), "relu": bool(relu)}
    info = {"seconds": round(time.perf_counter() - started, 4), "device": str(batch.device),
            "layer_shape": list(layer_map.shape[2:])}
    return {"raw": raw.astype(np.float32), "map": upsampled.astype(np.float32), "params": params, "info": info}
