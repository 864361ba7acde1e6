"""Command line: `explain` writes overlay PNGs and a scores CSV for a trained run's decisions on a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.synthetic import LESIONS_FILE
from core.data.readers.registry import data_argument_help
from core.errors import InputError
# Torch-free modules: `python -m core --help` does not load torch and Captum.
from core.explain.colormaps import DEFAULT_COLORMAP
from core.explain.registry import explainer_names, get_explainer
from core.explain.windows import BASELINES
from core.store.csv_safe import write_csv


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="occlusion or Grad-CAM maps for a run's decisions, with box scores",
        description="Explain a trained run's decisions on a dataset: one overlay PNG per image (all on one colour "
                    "scale), scores.csv (class, probability, and where lesion boxes exist the pointing-game hit "
                    "and share of positive attribution inside the boxes) and summary.csv per class, split by "
                    "correct vs misclassified images.")
    parser.add_argument("--run", required=True, help="run id, run folder, checkpoint folder or .safetensors")
    parser.add_argument("--data", type=Path, required=True, help=data_argument_help())
    parser.add_argument("--method", choices=explainer_names(), default="occlusion")
    parser.add_argument("--images", type=int, default=8, help="how many images to explain (default 8)")
    parser.add_argument("--misclassified", action="store_true",
                        help="only images the model gets wrong (scans the dataset in order until --images found)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and CSVs")
    parser.add_argument("--target", choices=("predicted", "true"), default="predicted",
                        help="class to explain: the model's prediction (default) or the true label")
    parser.add_argument("--boxes", type=Path, default=None,
                        help=f"CSV of lesion boxes (default: {LESIONS_FILE} beside the data, if any)")
    parser.add_argument("--window", type=int, default=None, help="occlusion window in input pixels (default 20)")
    parser.add_argument("--stride", type=int, default=None, help="occlusion stride (default: half the window)")
    parser.add_argument("--baseline", choices=BASELINES, default=None, help="occlusion fill")
    parser.add_argument("--layer", default=None, help="Grad-CAM layer name (default: the backbone's)")
    parser.add_argument("--guided", action="store_true", help="guided Grad-CAM")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="any parameter of the method (repeatable), e.g. --param perturbations_per_eval=64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--cache", type=Path, default=None, help="map cache folder (reused across calls)")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, help=f"overlay colormap (default {DEFAULT_COLORMAP})")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    parser.set_defaults(func=run_explain)


def _method_params(args: argparse.Namespace, card: dict) -> dict:
    """The chosen method's parameters: the shortcut flags it takes, then any --param NAME=VALUE (typed and checked
    against the registry's specs when the map is computed)."""
    specs = {spec.name for spec in get_explainer(args.method).params}
    flags = {"window": args.window, "stride": args.stride, "baseline": args.baseline, "layer": args.layer,
             "guided": args.guided}
    given = {k: v for k, v in flags.items() if k in specs and v is not None}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {item!r}: write NAME=VALUE, e.g. --param window=16")
        given[name.strip()] = value.strip()
    if "layer" in specs and given.get("layer") is None:
        from core.models import get_backbone

        try:
            given["layer"] = get_backbone(card.get("backbone", "")).gradcam_layer
        except InputError:  # an imported model or a backbone outside the registry: explain() picks the layer from
            given.pop("layer", None)  # the model itself (an imported TorchScript chain names its own)
    return {k: v for k, v in given.items() if v is not None}


def _find_boxes(args: argparse.Namespace) -> Path | None:
    if args.boxes is not None:
        if not args.boxes.is_file():
            raise InputError(f"boxes CSV {args.boxes} does not exist")
        return args.boxes
    from core.explain.boxes import find_lesions_csv

    return find_lesions_csv(args.data)


def _label_of(table: pd.DataFrame, row: int) -> str:
    return str(table["label"].iat[row])


def _select(model, dataset, transform, task, operating_point, args, multilabel: bool) -> list[dict]:
    """The images to explain with the model's call (core.infer.predictions.model_calls: its operating point when
    the card stores one, as in its `predicted` column and on the pages): the first N, or the first N misclassified."""
    import torch

    from core.explain.model_state import ClassProbabilities, borrowed_model
    from core.infer.predictions import model_calls

    classes = list(task.classes)
    chosen = []
    table = dataset.table
    with borrowed_model(model):
        scorer = ClassProbabilities(model, multilabel)
        for row in range(len(dataset)):
            image = dataset.load_image(row)
            tensor = transform(image).unsqueeze(0).to(args.device)
            with torch.no_grad():
                probs = scorer(tensor)[0].cpu().numpy()
            predicted = str(model_calls(probs[None, :], task, operating_point)[0])
            label = _label_of(table, row)
            correct = predicted in label.split("|") if multilabel else predicted == label
            if args.misclassified and correct:
                continue
            if args.target == "true" and not multilabel:
                if label not in classes:
                    raise InputError(f"image {table['image_id'].iat[row]}: label {label!r} is not a model class")
                target = classes.index(label)
            elif multilabel:  # one map per image: the most probable of its labels
                target = int(np.argmax(probs))
            else:
                target = classes.index(predicted)
            chosen.append({"row": row, "image_id": str(table["image_id"].iat[row]), "image": image,
                           "tensor": tensor, "label": label, "predicted": predicted, "correct": correct,
                           "target": target})
            if len(chosen) >= args.images:
                break
    return chosen


def run_explain(args: argparse.Namespace) -> int:
    import torch

    from core.data import load_dataset
    from core.explain.boxes import match_boxes, read_boxes
    from core.explain.cache import MapCache
    from core.explain.compute import compute_maps
    from core.explain.exports import safe_file_name
    from core.explain.overlay import outline, overlay, shared_scale
    from core.explain.lung_mask import applies_to, lung_field
    from core.explain.scoring import score_maps, summarise_lung_scores, summarise_scores
    from core.data.tasks import get_task, task_from_dict
    from core.models import build_transform, load_checkpoint

    if args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available on this machine")
    from core.infer.predict import resolve_model
    from core.store import Workspace

    from core.explain.explain_model import not_offered

    _, weights = resolve_model(Workspace.open(), args.run)  # a run id, run folder or checkpoint, as `predict`
    model, card = load_checkpoint(weights)
    if sentence := not_offered(model, args.method):  # the Explain page's words (an imported ONNX model...)
        raise InputError(sentence)
    model.to(args.device)
    task_info = card.get("task")
    if isinstance(task_info, dict):
        task = task_from_dict(task_info) if "classes" in task_info else get_task(task_info.get("name", ""))
    else:
        task = get_task(task_info) if task_info else None
    classes = list(card.get("classes") or (task.classes if task else []))
    if not classes:
        raise InputError(f"{args.run}: the model card names no classes")
    if task is None or list(task.classes) != classes:
        # a card naming no task (or another class order): the calls need the card's classes in its order
        task = task_from_dict({"classes": classes, "kind": task.kind if task else "multiclass"},
                              f"{args.run}: model card")
    from core.metrics.model_operating_point import ModelOperatingPoint

    operating_point = ModelOperatingPoint.from_dict(card.get("operating_point"), source=f"{args.run}: model card")
    dataset = load_dataset(args.data, task=task)
    multilabel = dataset.is_multilabel
    preprocess = dict(card["preprocessing"])
    transform = build_transform(preprocess)
    params = _method_params(args, card)
    if multilabel:
        params["multilabel"] = True

    chosen = _select(model, dataset, transform, task, operating_point, args, multilabel)
    if not chosen:
        what = "misclassified images" if args.misclassified else "images"
        print(f"no {what} to explain in {args.data}", file=sys.stderr)
        return 1
    from core.data.cli import ConsoleProgress

    cache = MapCache(args.cache) if args.cache else None
    model_id = f"{weights.resolve()}|{getattr(model, 'weights_source', '')}"
    maps = compute_maps(
        model, [(c["image_id"], c["tensor"], c["target"], c["image"].size) for c in chosen], args.method, params,
        cache, model_id=model_id, preprocess=preprocess, progress=ConsoleProgress(f"{args.method} maps"))

    boxes_by_id: dict = {}
    boxes_path = _find_boxes(args)
    if boxes_path is not None:
        boxes_by_id, problems = match_boxes(read_boxes(boxes_path), dataset.table, base_dir=boxes_path.parent)
        print(f"lesion boxes: {boxes_path} ({len(boxes_by_id)} images here have boxes; {len(problems)} box rows "
              "are for images not in this dataset)",
              file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    vmin, vmax = shared_scale(maps.values())
    chest_xray = applies_to(task)  # scores get the lung-field share (core.explain.lung_mask)
    records, files = [], {}
    for index, c in enumerate(chosen):
        amap = maps[c["image_id"]]
        name = f"{index:04d}-{safe_file_name(c['image_id'])}.png"
        field = lung_field(c["image"]) if chest_xray else None
        picture = overlay(c["image"], amap, colormap=args.colormap, opacity=args.opacity, vmin=vmin, vmax=vmax)
        (outline(picture, field.mask) if field is not None and field.found else picture).save(args.out / name)
        files[c["image_id"]] = (name, amap)
        records.append({"image_id": c["image_id"], "label": c["label"], "predicted": c["predicted"],
                        "map": amap, "boxes": boxes_by_id.get(c["image_id"], []),
                        **({"lung_field": field} if chest_xray else {})})
    scores = score_maps(records)
    scores["correct"] = [c["correct"] for c in chosen]
    scores.insert(3, "target_class", [classes[c["target"]] for c in chosen])
    scores.insert(4, "probability", [files[c["image_id"]][1].probability for c in chosen])
    scores["overlay"] = [files[c["image_id"]][0] for c in chosen]
    write_csv(scores, args.out / "scores.csv")
    if boxes_by_id:
        write_csv(summarise_scores(scores, classes=classes), args.out / "summary.csv")
    first = next(iter(maps.values()))
    (args.out / "explain.json").write_text(json.dumps(
        {"run": str(args.run), "data": str(args.data), "method": args.method, "params": first.params,
         "colour_scale": [vmin, vmax], "images": len(chosen), "boxes": str(boxes_path) if boxes_path else None},
        indent=2))
    lungs = summarise_lung_scores(scores.assign(method=args.method)) if chest_xray else None
    if lungs is not None and not lungs.empty and lungs.iloc[0]["n_lung_field"] == 0:
        print(f"no lung field found on any of the {len(chosen)} images (lateral views or opacified lungs?)")
    elif lungs is not None and not lungs.empty:
        row = lungs.iloc[0]
        print(f"lung field found on {row['n_lung_field']} of {row['n_maps']} images; median share of positive "
              f"attribution inside it {row['median_lung_share']:.0%}; maps peaking inside the lungs "
              f"{row['peaks_in_lungs']} of {row['n_lung_field']} (scores.csv: lung_share, peak_in_lungs)")
    print(f"wrote {len(chosen)} overlays, scores.csv{' and summary.csv' if boxes_by_id else ''} to {args.out}")
    return 0
