"""Checkpoint IO: model.safetensors + model_card.json, written atomically and read back without unpickling."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch import nn

from core.errors import InputError
from core.models.factory import create_model, input_affine, set_input_affine
from core.models.preprocess import preprocess_config
from core.models.registry import feature_dim_of
from core.store.files import write_atomically

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model_card.json"
_REQUIRED_CARD_KEYS = ("backbone", "num_classes", "head")
# Fields read by inference and reports, with the JSON type each must have when present.
_CARD_FIELD_TYPES = {"backbone": str, "head": str, "task": dict, "source_task": dict, "classes": list,
                     "preprocessing": dict, "operating_point": (dict, type(None)), "training": dict,
                     "inference": dict, "input_affine": bool, "feature_stats": (dict, type(None)),
                     "external": dict}
# Sizes read from a card are bounded before a model is built from them (a num_classes of 1e9 would allocate a
# terabyte of head weights). MAX_CLASSES is core.data.tasks.MAX_CLASSES (models may not import data;
# tests/test_checkpoint.py checks that they agree).
MAX_CLASSES = 1000
MAX_HIDDEN = 65_536
MAX_INPUT_SIDE = 4096


def _json_default(value):
    # Cards carry numpy numbers and arrays from training summaries; JSON has no such types.
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"model card value of type {type(value).__name__} cannot be written as JSON")


def save_checkpoint(model: nn.Module, out_dir: str | Path, card: dict) -> Path:
    """Write out_dir/model.safetensors (the state dict) and out_dir/model_card.json; returns out_dir.

    The card gets backbone, num_classes, head, hidden, drop_rate, weights_source, preprocessing (the card's own
    if given, as training may use another image size, else the model's), format_version and created.
    """
    from safetensors.torch import save_file

    if not hasattr(model, "backbone_name"):
        raise TypeError("save_checkpoint needs a model made by create_model (it records the backbone)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full_card = dict(card)
    full_card.update(
        backbone=model.backbone_name,
        num_classes=int(model.num_classes),
        head=getattr(model, "head_kind", "linear"),
        hidden=getattr(model, "head_hidden", None),
        drop_rate=float(getattr(model, "head_drop_rate", 0.0)),
        weights_source=getattr(model, "weights_source", "unknown"),
        preprocessing=dict(card.get("preprocessing") or preprocess_config(model)),
        format_version=FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _feature_stats_card(model, out_dir, full_card)
    card_text = json.dumps(full_card, indent=2, default=_json_default)
    # safetensors refuses shared or strided storage: give every tensor its own contiguous CPU copy.
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    metadata = {"format": "pt", "backbone": model.backbone_name, "format_version": str(FORMAT_VERSION)}
    write_atomically(out_dir / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata=metadata))
    write_atomically(out_dir / CARD_NAME, lambda tmp: Path(tmp).write_text(card_text, encoding="utf-8"))
    return out_dir


def _feature_stats_card(model: nn.Module, out_dir: Path, card: dict) -> None:
    """The card's `feature_stats`: a FeatureStats is written beside the weights (core.models.feature_stats) and
    replaced by its record; a record whose file is not in out_dir (a card copied from another folder) is dropped.
    `input_affine` says whether the head starts with a fixed feature map (load_checkpoint rebuilds it)."""
    from core.models.feature_stats import CARD_KEY, FeatureStats, write_feature_stats

    stats = card.get(CARD_KEY)
    if isinstance(stats, FeatureStats):
        card[CARD_KEY] = write_feature_stats(out_dir, stats)
    elif isinstance(stats, dict) and not (out_dir / Path(str(stats.get("file") or "")).name).is_file():
        card[CARD_KEY] = None
    if int(getattr(model, "num_classes", 0) or 0) and input_affine(model) is not None:
        card["input_affine"] = True
    else:
        card.pop("input_affine", None)


def find_checkpoint(path: str | Path) -> Path:
    """The model file for a run folder, a checkpoint folder or the file itself: model.safetensors, or the ONNX or
    TorchScript file of an imported model (core.models.external); InputError if absent."""
    from core.models.external import FORMATS

    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors" and not (path.name in FORMATS.values()
                                                  and (path.parent / CARD_NAME).is_file()):
            raise InputError(f"{path.name}: a checkpoint is a .safetensors file (with {CARD_NAME} beside it)")
        return path
    if path.is_dir():
        for folder in (path, path / "checkpoint"):
            for name in (WEIGHTS_NAME, *FORMATS.values()):
                if (folder / name).is_file():
                    return folder / name
        raise InputError(f"{path}: no {WEIGHTS_NAME} in it or in its checkpoint/ folder")
    raise InputError(f"checkpoint {path} does not exist")


def read_card(card_path: Path) -> dict:
    """The model card as a dict, checked: readable JSON object, required keys, field types, format version.
    Every problem is an InputError naming the card file and the field."""
    if not card_path.is_file():
        raise InputError(f"{card_path}: the model card is missing; cannot rebuild the model without it")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{card_path}: not a readable JSON model card ({exc})") from None
    if not isinstance(card, dict):
        raise InputError(f"{card_path}: the model card must be a JSON object, not {type(card).__name__}")
    missing = [key for key in _REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise InputError(f"{card_path}: the model card lacks {', '.join(missing)}")
    for key, kind in _CARD_FIELD_TYPES.items():
        if key in card and not isinstance(card[key], kind):
            raise InputError(f"{card_path}: field {key!r} of the model card must be "
                             f"{getattr(kind, '__name__', 'an object')}, not {type(card[key]).__name__}")
    try:
        version = int(card.get("format_version", 1))
        int(card["num_classes"])
    except (TypeError, ValueError):
        raise InputError(f"{card_path}: 'format_version' and 'num_classes' of the model card must be whole "
                         "numbers") from None
    if version > FORMAT_VERSION:
        raise InputError(
            f"{card_path.name}: format version {card['format_version']} is newer than this software "
            f"understands ({FORMAT_VERSION}); update the software"
        )
    _check_card_sizes(card_path, card)
    return card


def _whole(card_path: Path, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InputError(f"{card_path}: {name} of the model card must be a whole number, not {value!r}")
    return int(value)


def _check_card_sizes(card_path: Path, card: dict) -> None:
    """num_classes, hidden and the preprocessing input size within sane limits (before anything is allocated)."""
    for name, value, low, high in (("num_classes", card["num_classes"], 0, MAX_CLASSES),
                                   ("hidden", card.get("hidden"), 1, MAX_HIDDEN)):
        if value is None and name == "hidden":
            continue
        number = _whole(card_path, name, value)
        if not low <= number <= high:
            raise InputError(f"{card_path}: {name} of the model card is {value!r}, outside {low}..{high:,}; "
                             "the card is damaged or not one this software wrote")
    size = (card.get("preprocessing") or {}).get("input_size")
    if size is not None:
        sides = list(size) if isinstance(size, (list, tuple)) else [size]
        for side in sides[-2:]:
            if not 1 <= _whole(card_path, "preprocessing input_size", side) <= MAX_INPUT_SIDE:
                raise InputError(f"{card_path}: preprocessing input_size of the model card is {size!r}: each side "
                                 f"must lie in 1..{MAX_INPUT_SIDE}")


def _check_against_tensors(card_path: Path, card: dict, state: dict) -> None:
    """The card's head sizes must fit the checkpoint's own tensors: a head of n classes (or n hidden units) has a
    weight with a dimension of n, so no size above the largest tensor dimension can be right."""
    largest = max((int(d) for t in state.values() for d in t.shape), default=0)
    for name in ("num_classes", "hidden"):
        value = card.get(name)
        if name == "hidden" and (value is None or card.get("head") != "mlp"):
            continue
        if int(value) > largest:
            raise InputError(f"{card_path}: {name} of the model card is {value!r}, but no tensor of the checkpoint "
                             f"has a dimension above {largest:,}; the card does not belong to these weights")


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode on the CPU, card) from a run folder, checkpoint folder or .safetensors file.

    The model is rebuilt from the card with create_model(pretrained=False) and its state dict loaded
    strictly; nothing is unpickled. `model.weights_source` names the file's sha256.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path = find_checkpoint(path)
    card = read_card(weights_path.parent / CARD_NAME)
    if card.get("external"):
        from core.models.external import load_external

        return load_external(weights_path, card)  # a model trained elsewhere: its own loader, still no pickle
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{weights_path}: not a readable safetensors file ({exc})") from exc
    _check_against_tensors(weights_path.parent / CARD_NAME, card, state)
    try:
        num_classes = int(card["num_classes"])
        head = str(card["head"])
        hidden = int(card.get("hidden") or 64)
        drop_rate = float(card.get("drop_rate") or 0.0)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{weights_path.parent / CARD_NAME}: malformed head fields ({exc})") from exc
    model = create_model(
        card["backbone"], num_classes, pretrained=False, head=head if num_classes else "linear",
        drop_rate=drop_rate, hidden=hidden,
    )
    if card.get("input_affine") and num_classes:
        from core.models.feature_stats import InputAffine

        set_input_affine(model, InputAffine(feature_dim_of(model)))  # its values come with the state dict below
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing {missing[:3]}")
        if unexpected:
            problems.append(f"unexpected {unexpected[:3]}")
        if wrong_shape:
            key = wrong_shape[0]
            problems.append(f"{key!r} is {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}")
        raise InputError(f"{weights_path}: does not match its model card ({card['backbone']}): {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    preprocessing = card.get("preprocessing")
    if isinstance(preprocessing, dict):
        # The model carries the preprocessing it was trained with: preprocess_config(model) returns it.
        model.pretrained_cfg = {**model.pretrained_cfg, **preprocessing}
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    model.weights_source = f"checkpoint sha256:{digest[:16]}"
    model.eval()
    return model, card
