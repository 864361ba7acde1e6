"""The report's model card and test-set facts, read from the run folder and the workspace registry."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from core.infer.imported import IMPORTED_MODE
from core.infer.model_exchange import EXTERNAL_MODE
from core.store import Workspace

CHECKPOINT_DIR = "checkpoint"
# Registry modes of runs this product did not train: a model file registered by `import-model`, and a table of
# scores imported from a file. What their training was is not known here, and the report says so in these words.
ELSEWHERE_MODES = (EXTERNAL_MODE, IMPORTED_MODE)
TRAINED_ELSEWHERE = "trained elsewhere: not recorded here; to be completed by the authors"
_FORMAT_NAMES = {"onnx": "ONNX", "torchscript": "TorchScript"}


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


def trained_elsewhere(record: dict | None) -> bool:
    """The one test of a run this product did not train: a model file registered by `import-model` (registry mode
    "external") or a table of imported scores (mode "imported"). `record`: the run's registry row or the report's
    model card (both carry `mode`), or a whole report dict (its model card's mode, or its imported scores'
    provenance, `scores_source`)."""
    record = record or {}
    if "scores_source" in record or "headline" in record:  # a report
        return bool(record.get("scores_source")) or trained_elsewhere(record.get("model"))
    return record.get("mode") in ELSEWHERE_MODES


def model_card(ws: Workspace, run_id: str) -> dict:
    """What a stakeholder needs to know about the model: how it was trained and how it did on validation.

    Reads the run's config.json (the resolved recipe), checkpoint/model_card.json and summary.json, falling
    back to the registry's copy of the config when the folder lacks one. A model trained elsewhere gets what its
    user's card says instead (`elsewhere_card`): none of the training fields, which are not known here.
    """
    run = ws.get_run(run_id) or {}
    run_dir = Path(run["run_dir"]) if run.get("run_dir") else ws.runs_dir / run_id
    config = _read_json(run_dir / "config.json") or dict(run.get("config") or {})
    card = _read_json(run_dir / CHECKPOINT_DIR / "model_card.json")
    if trained_elsewhere(run) or trained_elsewhere(config):
        return elsewhere_card(run_id, run, config, card)
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


def elsewhere_card(run_id: str, run: dict, config: dict, card: dict) -> dict:
    """The model card of a model file trained elsewhere: what the card its user supplied says (input size,
    preprocessing, classes in output order, output kind), the file's digest and who registered it when; no
    training field (data, epochs, optimiser, seed, validation), which only its authors know."""
    record = card.get("external") or {}
    imported = card.get("imported") or {}
    return {
        "run_id": run_id,
        "run_name": run.get("name") or config.get("name") or run_id,
        "status": run.get("status"),
        "backbone": config.get("backbone") or card.get("backbone") or run.get("backbone"),
        "mode": config.get("mode") or run.get("mode"),
        "head": card.get("head"),
        "weights_source": _weights_source(config, card),
        "image_size": _image_size(config, card),
        "binary_model": config.get("binary") or card.get("binary") or None,
        "trained_here": False,
        "origin": {
            "format": record.get("format") or (config.get("external") or {}).get("format"),
            "file": record.get("imported_from") or (config.get("external") or {}).get("file"),
            "sha256": record.get("sha256") or (config.get("external") or {}).get("sha256"),
            "output": record.get("output"),
            "output_classes": record.get("output_classes") or card.get("classes"),
            "input_size": record.get("input_size"),
            "channels": record.get("channels"),
            "registered_by": imported.get("by"),
            "registered_at": imported.get("at"),
            "exported_from": card.get("exported_from") or None,
        },
        "checkpoint_created": card.get("created") or imported.get("at"),
        "preprocessing": card.get("preprocessing") or None,
        "operating_point": card.get("operating_point") or None,
        "adaptation": card.get("adaptation") or None,
        "recalibration": card.get("recalibration") or None,
    }


def _when(value) -> str:
    """A time stored as seconds since the epoch or as ISO text, as "2026-01-31 14:05 UTC"."""
    try:
        moment = (_dt.datetime.fromtimestamp(float(value), _dt.timezone.utc) if isinstance(value, (int, float))
                  else _dt.datetime.fromisoformat(str(value)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unrecorded time"
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _listed(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values or [])


def elsewhere_facts(report: dict) -> list[tuple[str, str]]:
    """What is known about a model trained elsewhere, as (what, value) pairs in reading order: from the card its
    user supplied (a model file) or from the imported scores' provenance; the last pair says its training is not
    known here. [] for a run trained here. The model card table, the checklist and the methods paragraph say
    these, in these words."""
    if not trained_elsewhere(report):
        return []
    source = report.get("scores_source")
    if source:
        columns = (source.get("columns") or {}).get("classes") or {}
        facts = [("Origin", "trained elsewhere; its scores were imported from a file (no model in this workspace)"),
                 ("Scores file", f"\u201c{source.get('file_name') or 'unnamed'}\u201d"),
                 ("File SHA-256", str(source.get("sha256") or "not recorded")),
                 ("Imported", f"by {source.get('imported_by') or 'an unrecorded user'} on "
                              f"{_when(source.get('imported_at'))}")]
        if columns:
            facts.append(("Score columns", ", ".join(f"{c} = {col}" for c, col in columns.items())))
        if source.get("detected"):
            facts.append(("Scores read as", f"{source['detected']}; "
                                            f"{source.get('transform_note') or source.get('transform') or 'as given'}"))
        facts.append(("Model and its training", TRAINED_ELSEWHERE))
        return facts
    m = report.get("model") or {}
    origin = m.get("origin") or {}
    fmt = _FORMAT_NAMES.get(origin.get("format"), origin.get("format") or "model")
    facts = [("Origin", f"trained elsewhere; a model file ({fmt}) registered here by import-model")]
    if origin.get("file"):
        facts.append(("Model file", f"{fmt} file \u201c{origin['file']}\u201d"))
    if origin.get("sha256"):
        facts.append(("File SHA-256", str(origin["sha256"])))
    if origin.get("registered_by") or origin.get("registered_at"):
        facts.append(("Registered", f"by {origin.get('registered_by') or 'an unrecorded user'} on "
                                    f"{_when(origin.get('registered_at'))}"))
    size = origin.get("input_size")
    if size:
        channels = origin.get("channels")
        facts.append(("Input (its card)", f"{' x '.join(str(int(s)) for s in size)} px"
                      + (f", {int(channels)} channel{'s' if int(channels) != 1 else ''}" if channels else "")))
    p = m.get("preprocessing") or {}
    if p:
        steps = [f"mean {_listed(p.get('mean'))}" if p.get("mean") else "",
                 f"standard deviation {_listed(p.get('std'))}" if p.get("std") else "",
                 f"framing {p['framing']}" if p.get("framing") else "",
                 f"{p['interpolation']} interpolation" if p.get("interpolation") else ""]
        facts.append(("Preprocessing (its card)", "; ".join(s for s in steps if s) or "as stated on its card"))
    if origin.get("output_classes"):
        facts.append(("Classes, in output order", ", ".join(map(str, origin["output_classes"]))))
    if origin.get("output"):
        facts.append(("Output", str(origin["output"])))
    exported = origin.get("exported_from") or {}
    if exported.get("run_id"):
        difference = exported.get("max_abs_difference")
        facts.append(("Exported from", f"run {exported['run_id']} of this product"
                      + (f" (largest probability difference {float(difference):.1e} on "
                         f"{int(exported.get('images_checked') or 0):,} images)" if difference is not None else "")))
    facts.append(("Training data, hyperparameters, seed, model selection", TRAINED_ELSEWHERE))
    return facts


def elsewhere_sentence() -> str:
    """TRAINED_ELSEWHERE as a sentence of its own."""
    return TRAINED_ELSEWHERE[:1].upper() + TRAINED_ELSEWHERE[1:] + "."


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
