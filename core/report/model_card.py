"""The report's model card and test-set facts, read from the run folder and the workspace registry."""

from __future__ import annotations

import json
from pathlib import Path

from core.store import Workspace

CHECKPOINT_DIR = "checkpoint"


def _read_json(path: Path) -> dict:
    """A JSON file as a dict; {} when missing or unreadable (a report still builds from what is there)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _data_limit(config: dict) -> str:
    if config.get("per_class"):
        return f"{int(config['per_class']):,} images per class"
    if config.get("fraction"):
        return f"{float(config['fraction']):.0%} of the training images"
    return "all training images"


def _image_size(config: dict, card: dict):
    if config.get("image_size"):
        return int(config["image_size"])
    size = (card.get("preprocessing") or {}).get("input_size")
    return int(size[-1]) if isinstance(size, (list, tuple)) and size else None


def _weights_source(config: dict, card: dict) -> str:
    if card.get("weights_source"):
        return str(card["weights_source"])
    if config.get("weights_file"):
        return "local weights file"
    return "pretrained (ImageNet)" if config.get("pretrained", True) else "random init"


def model_card(ws: Workspace, run_id: str) -> dict:
    """What a stakeholder needs to know about the model: how it was trained and how it did on validation.

    Reads the run's config.json (the resolved recipe), checkpoint/model_card.json and summary.json, falling
    back to the registry's copy of the config when the folder lacks one.
    """
    run = ws.get_run(run_id) or {}
    run_dir = Path(run["run_dir"]) if run.get("run_dir") else ws.runs_dir / run_id
    config = _read_json(run_dir / "config.json") or dict(run.get("config") or {})
    card = _read_json(run_dir / CHECKPOINT_DIR / "model_card.json")
    summary = _read_json(run_dir / "summary.json") or dict(card.get("training") or {})
    training_set = ws.get_dataset(config["dataset_id"]) if config.get("dataset_id") else None
    images = summary.get("images") or {}
    binary = config.get("binary") or card.get("binary")
    return {
        "run_id": run_id,
        "run_name": run.get("name") or config.get("name") or run_id,
        "status": run.get("status"),
        "backbone": config.get("backbone") or card.get("backbone") or run.get("backbone"),
        "mode": config.get("mode") or run.get("mode"),
        "head": config.get("head") or card.get("head"),
        "weights_source": _weights_source(config, card),
        "image_size": _image_size(config, card),
        "epochs": config.get("epochs"),
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "stopped_early": summary.get("stopped_early"),
        "optimizer": config.get("optimizer"),
        # The default features-mode head is fitted exactly (no epochs, no optimiser): what the card says instead.
        "head_fit": summary.get("head_fit") or config.get("head_fit"),
        "head_strength": (summary.get("probe") or {}).get("C"),
        "validation_scheme": summary.get("validation"),
        "learning_rate": config.get("lr"),
        "batch_size": config.get("batch_size"),
        "data_limit": _data_limit(config),
        "balancing": config.get("balance"),
        "binary_model": binary if binary else None,
        "seed": config.get("seed"),
        "training_dataset": (training_set or {}).get("name") or config.get("dataset_id"),
        "training_dataset_id": config.get("dataset_id"),
        "training_dataset_synthetic": bool(((training_set or {}).get("meta") or {}).get("synthetic")),
        "training_images": images.get("train"),
        "validation_images": images.get("val"),
        "validation_metric": summary.get("metric") or run.get("best_metric_name"),
        "best_validation_metric": summary.get("best_metric", run.get("best_metric")),
        "validation": summary.get("val") or {},
        "device": summary.get("device") or run.get("device"),
        "training_seconds": summary.get("seconds"),
        "checkpoint_created": card.get("created"),
        # For the reporting checklist (CLAIM 9, 22-26; STARD 12a): as stored with the weights, never re-derived.
        "preprocessing": card.get("preprocessing") or None,
        "operating_point": card.get("operating_point") or None,
        # A run adapted without labels, or recalibrated on labelled site images: its calls say so (site_check).
        "adaptation": card.get("adaptation") or None,
        "recalibration": card.get("recalibration") or None,
    }


def head_fitting(m: dict) -> str | None:
    """How a logistic head was fitted, in words (the report's model card, checklist and methods paragraph); None
    for a head trained in epochs, which those describe by optimiser and epochs."""
    if m.get("head_fit") != "logistic":
        return None
    strength = f", strength C = {m['head_strength']:g}" if m.get("head_strength") is not None else ""
    scheme = m.get("validation_scheme") or "patient-grouped cross-validation"
    return f"L2 logistic regression fitted exactly (no epochs){strength}, chosen by {scheme}"


def describe_test_set(ws: Workspace, test_set_id: str, evaluation: dict, predictions_meta: dict) -> dict:
    """Name, size, patients and class counts of the test set (counts from the evaluation, not recounted)."""
    entry = ws.get_dataset(test_set_id) or {}
    meta = entry.get("meta") or {}
    return {
        "id": test_set_id,
        "name": entry.get("name") or test_set_id,
        "synthetic": bool(meta.get("synthetic")),
        "registered_images": entry.get("n_images"),
        "n_images": evaluation.get("n_images"),
        "n_patients": evaluation.get("n_patients"),
        "class_counts": evaluation.get("class_counts"),
        "label_prevalence": {name: section.get("prevalence") for name, section in
                             ((evaluation.get("multilabel") or {}).get("per_label") or {}).items()} or None,
        "fingerprint": entry.get("fingerprint") or predictions_meta.get("dataset_fingerprint"),
        "excluded_images": predictions_meta.get("n_excluded"),
    }
