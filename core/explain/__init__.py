"""Explaining a classifier's decisions: Captum occlusion and Grad-CAM maps, their cache, overlays and box scores."""

from core.explain.boxes import match_boxes, read_boxes
from core.explain.cache import MapCache, image_fingerprint, map_key
from core.explain.compute import compute_maps, explain
from core.explain.geometry import input_geometry, map_to_image
from core.explain.gradcam import default_gradcam_layer, resolve_layer
from core.explain.maps import AttributionMap
from core.explain.model_state import borrowed_model, hook_counts
from core.explain.occlusion import window_count
from core.explain.overlay import colorbar, colorize, overlay, shared_scale
from core.explain.registry import Explainer, ParamSpec, get_explainer, list_explainers
from core.explain.scoring import (
    BoxScore,
    box_mask,
    pointing_game,
    positive_share_in_boxes,
    score_against_boxes,
    score_maps,
    summarise_scores,
)

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
    "overlay",
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
