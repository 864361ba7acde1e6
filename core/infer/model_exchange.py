"""Models in and out: a model trained elsewhere (ONNX, TorchScript) registered as a run (`import_model`), and a
run of this product exported to ONNX or TorchScript with the card that imports it (`export_run`), checked against
the PyTorch model on test images before anything is written."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.data.tasks import Task, get_task, list_tasks, task_from_dict
from core.errors import InputError
from core.models.external import (CARD_KEY, FORMATS, ExternalCard, build_classifier, check_shapes, external_record,
                                  model_format, parse_card, read_card_file)
from core.store import Workspace
from core.store.integrity import file_sha256
from core.store.access import SHELL, Actor, require
from core.store.files import write_atomically

EXPORT_FORMATS = ("onnx", "torchscript")
# The registry's `mode` of a run made from a model file trained elsewhere (imported score tables are another mode,
# core.infer.imported.IMPORTED_MODE: they have no model behind them).
EXTERNAL_MODE = "external"
EXPORT_TOLERANCE = 1e-4  # largest difference in any probability between the export and the PyTorch model


@dataclass(frozen=True)
class ImportedModel:
    run_id: str
    run_dir: Path
    card: dict


@dataclass(frozen=True)
class Export:
    """What export_run wrote and how closely the export reproduces the PyTorch model."""

    model_path: Path
    card_path: Path
    max_abs_difference: float
    images_checked: int
    dataset_id: str | None


def card_task(card: ExternalCard) -> Task:
    """The task a card names (a preset name or a task table), else a custom task of its classes."""
    if isinstance(card.task, str):
        if card.task not in list_tasks():
            raise InputError(f"model card: unknown task {card.task!r}; presets: {', '.join(list_tasks())} (or give "
                             "the task as a table with its classes)")
        task = get_task(card.task)
    elif isinstance(card.task, dict):
        task = task_from_dict(card.task, "model card task")
    else:
        task = task_from_dict({"name": card.name or "imported", "classes": list(card.classes),
                               **({"kind": card.kind} if card.kind else {})}, "model card")
    if card.classes and sorted(card.classes) != sorted(task.classes):
        raise InputError(f"model card: its classes ({', '.join(card.classes)}) are not those of task {task.name!r} "
                         f"({', '.join(task.classes)})")
    return task


def _card_of(card: ExternalCard | dict | str | Path) -> ExternalCard:
    if isinstance(card, ExternalCard):
        return card
    if isinstance(card, dict):
        return parse_card(card)
    return read_card_file(card)


def import_model(model_file: str | Path, card: ExternalCard | dict | str | Path,
                 workspace: Workspace | str | Path | None = None, *, name: str | None = None,
                 original_name: str | None = None, actor: Actor | None = SHELL) -> ImportedModel:
    """Register an ONNX model or TorchScript archive as a run of `workspace`, with the model card `card` (an
    ExternalCard, a dict, or a .json/.toml file). Every check (file kind, pickle refusal, input and output shapes
    against the card, output kind) runs before anything is stored; the file is copied into the run's checkpoint
    folder and its sha256 kept in the card. `predict`, every evaluation page and occlusion maps then treat it
    as any run."""
    require(actor, "start_run")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    model_file = Path(model_file)
    shown = original_name or model_file.name
    external = _card_of(card)
    task = card_task(external)
    classes = external.classes or task.classes
    external = replace(external, classes=tuple(classes))
    fmt = model_format(model_file)  # a pickle is refused here, by its bytes
    record = external_record(external, fmt, file_sha256(model_file), shown, task.classes)
    model = build_classifier(model_file, record, task.kind == "multilabel", shown)
    record["single_column"] = check_shapes(model, record, shown)
    del model

    from core.store import audit_trail
    from core.store.workspace import new_id
    from core.train.status import write_status

    label = name or external.name or Path(shown).stem
    config = {"backbone": f"external-{fmt}", "mode": EXTERNAL_MODE, "task": task.name, "name": label,
              "external": {"format": fmt, "file": shown, "sha256": record["sha256"]}}
    run_id = ws.create_run(config=config, name=label, run_id=new_id("run", f"imported-{label}"))
    run_dir = ws.runs_dir / run_id
    try:
        checkpoint = run_dir / "checkpoint"
        checkpoint.mkdir(parents=True, exist_ok=True)
        write_atomically(checkpoint / FORMATS[fmt], lambda tmp: shutil.copyfile(model_file, tmp))
        product_card = {
            **external.passed, "backbone": f"external-{fmt}", "num_classes": len(task.classes), "head": "external",
            "hidden": None, "task": task.to_dict(), "classes": list(task.classes), "kind": task.kind,
            "preprocessing": external.preprocessing(), "inference": {"amp": "float32"}, CARD_KEY: record,
            "run_id": run_id, "weights_source": f"{fmt} sha256:{record['sha256'][:16]}", "format_version": 1,
            "imported": {"by": getattr(actor, "user_id", None) or "shell",
                         "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
        text = json.dumps(product_card, indent=2, default=str)
        write_atomically(checkpoint / "model_card.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        write_status(run_dir, ws, run_id, status="succeeded", started=time.time(), finished=time.time(),
                     device="cpu")
        audit_trail.record(ws, actor, "model_imported", run_id, {"format": fmt, "file": shown,
                                                                  "sha256": record["sha256"]})
    except Exception:
        ws.update_run(run_id, status="failed", error="import: the model could not be stored")
        raise
    return ImportedModel(run_id, run_dir, product_card)


# -- export ---------------------------------------------------------------------------------------------------
def _probability_module(model, multilabel: bool):
    import torch

    class Probabilities(torch.nn.Module):
        """The whole model: normalised images in, probabilities out (softmax, or sigmoid per class)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            logits = self.inner(x)
            return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)

    return Probabilities(model).eval()


def _check_dataset(ws: Workspace, run_id: str, data, source_task: Task):
    """The images the export is checked on: `data`, else the newest test set this run has predictions for."""
    from core.infer.predict import _resolve_dataset

    if data is None:
        mine = [p for p in ws.list_predictions() if p["run_id"] == run_id and ws.get_dataset(p["dataset_id"])]
        if not mine:
            raise InputError(f"run {run_id} has no predictions on a registered test set to check the export on: "
                             "give the test images (--data TEST_SET)")
        data = mine[0]["dataset_id"]
    return _resolve_dataset(ws, data, source_task)


def _max_difference(reference, exported, ds, preprocessing: dict, batch_size: int = 32) -> tuple[float, int]:
    """Largest absolute difference between two probability functions over the decodable images of `ds`."""
    import torch
    from torch.utils.data import DataLoader

    from core.data.torch_data import InferenceImages
    from core.models import build_transform

    loader = DataLoader(InferenceImages(ds, build_transform(preprocessing, train=False)), batch_size=batch_size,
                        shuffle=False, num_workers=0)
    worst, n = 0.0, 0
    with torch.inference_mode():
        for x, problems in loader:
            keep = [i for i, problem in enumerate(problems) if not problem]
            if not keep:
                continue
            x = x[keep]
            worst = max(worst, float((reference(x).float() - exported(x).float()).abs().max()))
            n += len(keep)
    return worst, n


def export_card(card: dict, run: dict | None, run_id: str) -> dict:
    """card.json of an export: everything import-model needs (the output is probabilities)."""
    from core.models.preprocess import framing_of

    pre = card.get("preprocessing") or {}
    height, width = (int(v) for v in pre["input_size"][-2:])
    out = {"name": str((run or {}).get("name") or run_id), "task": card.get("task"),
           "classes": list(card.get("classes") or []), "input_size": [height, width], "channels": 3,
           "mean": [float(v) for v in pre["mean"]], "std": [float(v) for v in pre["std"]],
           "framing": framing_of(pre), "interpolation": str(pre.get("interpolation") or "bilinear"),
           "crop_pct": float(pre.get("crop_pct") or 1.0), "output": "probabilities"}
    for key in ("operating_point", "referral_band", "referral_calibration", "binary", "source_task",
                "training_prior"):
        if card.get(key) is not None:
            out[key] = card[key]
    return out


def export_run(run, out_dir: str | Path, workspace: Workspace | str | Path | None = None, *, fmt: str = "onnx",
               data=None, tolerance: float = EXPORT_TOLERANCE) -> Export:
    """Write out_dir/model.onnx (or model.torchscript.pt) and out_dir/card.json for `run`: the whole model,
    normalised images in, probabilities out. The export's probabilities are compared with the PyTorch model's on
    the test images (`data`, else the newest test set the run has predictions for); when any differs by more than
    `tolerance` nothing is written and an InputError gives the largest difference."""
    import torch

    from core.infer.predict import resolve_model
    from core.models import load_checkpoint

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    run_id, weights = resolve_model(ws, run)
    model, card = load_checkpoint(weights)
    if card.get(CARD_KEY):
        raise InputError(f"run {run_id} is an imported model; its own file is {weights}")
    task = task_from_dict(card.get("task") or {"classes": card.get("classes") or []}, "model card")
    source_task = task_from_dict(card["source_task"], "model card") if card.get("source_task") else task
    ds, dataset_id = _check_dataset(ws, run_id, data, source_task)
    reference = _probability_module(model.float(), task.kind == "multilabel")
    height, width = (int(v) for v in card["preprocessing"]["input_size"][-2:])
    example = torch.zeros(2, 3, height, width)
    out_dir = Path(out_dir).expanduser()
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        staged = Path(tmp) / FORMATS[fmt]
        if fmt == "onnx":
            from core.models.onnx_runtime import OnnxModel, export

            export(reference, example, staged)
            exported = OnnxModel(staged)
        else:
            import warnings

            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer and deprecation notices
                traced = torch.jit.trace(reference, example, check_trace=False)
                traced.save(str(staged))
                exported = torch.jit.load(str(staged))
        difference, n = _max_difference(reference, exported, ds, card["preprocessing"])
        if n == 0:
            raise InputError(ds.in_messages(f"{ds.source}: no decodable image to check the export on"))
        if not difference <= tolerance:
            raise InputError(f"the {fmt} export of run {run_id} differs from the PyTorch model by up to "
                             f"{difference:.2e} in a probability on {n} test images (more than {tolerance:g}); "
                             "nothing was written")
        out_dir.mkdir(parents=True, exist_ok=True)
        card_out = {**export_card(card, ws.get_run(run_id), run_id),
                    "exported_from": {"run_id": run_id, "format": fmt, "max_abs_difference": difference,
                                      "images_checked": n, "dataset_id": dataset_id,
                                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
        write_atomically(out_dir / FORMATS[fmt], lambda target: shutil.copyfile(staged, target))
        text = json.dumps(card_out, indent=2, default=_plain)
        write_atomically(out_dir / "card.json", lambda target: Path(target).write_text(text, encoding="utf-8"))
    return Export(out_dir / FORMATS[fmt], out_dir / "card.json", difference, n, dataset_id)


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)
