"""Explaining a classifier's decisions: Captum occlusion and Grad-CAM maps, their cache, overlays and box scores."""

# Exports load on first use (PEP 562): `python -m core <command>` registers this package's CLI without
# paying for torch and Captum unless an explanation is actually computed. The overlay function is imported
# from core.explain.overlay: a lazy package attribute of the same name as a submodule would be shadowed.
import importlib

_EXPORTS = {
    "match_boxes": "core.explain.boxes",
    "read_boxes": "core.explain.boxes",
    "MapCache": "core.explain.cache",
    "image_fingerprint": "core.explain.cache",
    "map_key": "core.explain.cache",
    "compute_maps": "core.explain.compute",
    "explain": "core.explain.compute",
    "input_geometry": "core.explain.geometry",
    "map_to_image": "core.explain.geometry",
    "default_gradcam_layer": "core.explain.gradcam",
    "resolve_layer": "core.explain.gradcam",
    "AttributionMap": "core.explain.maps",
    "borrowed_model": "core.explain.model_state",
    "hook_counts": "core.explain.model_state",
    "window_count": "core.explain.windows",
    "colorbar": "core.explain.overlay",
    "colorize": "core.explain.overlay",
    "shared_scale": "core.explain.overlay",
    "Explainer": "core.explain.registry",
    "ParamSpec": "core.explain.registry",
    "get_explainer": "core.explain.registry",
    "list_explainers": "core.explain.registry",
    "BoxScore": "core.explain.scoring",
    "box_mask": "core.explain.scoring",
    "pointing_game": "core.explain.scoring",
    "positive_share_in_boxes": "core.explain.scoring",
    "score_against_boxes": "core.explain.scoring",
    "score_maps": "core.explain.scoring",
    "summarise_scores": "core.explain.scoring",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AttributionMap",
    "BoxScore",
    "Explainer",
    "MapCache",
    "ParamSpec",
    "borrowed_model",
    "box_mask",
    "colorbar",
    "colorize",
    "compute_maps",
    "default_gradcam_layer",
    "explain",
    "get_explainer",
    "hook_counts",
    "image_fingerprint",
    "input_geometry",
    "list_explainers",
    "map_key",
    "map_to_image",
    "match_boxes",
    "pointing_game",
    "positive_share_in_boxes",
    "read_boxes",
    "resolve_layer",
    "score_against_boxes",
    "score_maps",
    "shared_scale",
    "summarise_scores",
    "window_count",
]
