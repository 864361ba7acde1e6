"""Recipe study: which features-mode recipe gives the best model on real, small, shifted data.

Patient-grouped 5-fold cross-validation on the real images in ../shared/data:
- chest_xray_sample (750 Kermany pediatric chest X-rays): pneumonia vs normal (score 1 - P(NORMAL)) and bacterial
  vs viral (among pneumonia cases);
- RetinaMNIST (DR grading 0-4): quadratic kappa and referable (grade >= 2) AUC;
- PneumoniaMNIST (train + val): pneumonia vs normal.
Each held-out fold is scored twice: as stored ("plain") and "shifted", re-saved the way real test sets arrive
(squashed to 224 x 224 with a bilinear filter, JPEG quality 75).

Every recipe runs the product's own code: core.models preprocessing and framings, core.train.features caches and
acquisition views, core.train.probe (logistic regression, strength by grouped inner CV), the product's Adam head
(core.train.features_mode.fit_head with its 20% patient validation split), and the operating point rule of
core.metrics.model_operating_point on out-of-fold predictions. AUCs are pooled over the five held-out folds with
DeLong intervals; "vs R0" is DeLong's paired test against the current default on the same images.

    .venv/bin/python benchmarks/bench_recipes.py [--datasets cxr,retina,pneumonia] [--recipes R0,R3,...]
        [--workspace /tmp/bench_recipes] [--out results.json]

Feature caches live in the workspace: a second run reuses them (delete it to time extraction again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import cohen_kappa_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402

from core.data import Dataset, load_dataset  # noqa: E402
from core.data.images import open_image  # noqa: E402
from core.data.splits import patient_groups, patient_split  # noqa: E402
from core.metrics.model_operating_point import choose_operating_point  # noqa: E402
from core.metrics.referral import binary_view_data  # noqa: E402
from core.metrics.roc import delong_test, roc_auc  # noqa: E402
from core.models import create_model, preprocess_config  # noqa: E402
from core.store import Workspace  # noqa: E402
from core.train.config import RunConfig  # noqa: E402
from core.train.context import RunContext  # noqa: E402
from core.train.events import EventWriter  # noqa: E402
from core.train.features import FeatureCache, cached_view_features  # noqa: E402
from core.train.features_mode import fit_head  # noqa: E402
from core.train.plan import TrainingData  # noqa: E402
from core.train.probe import fit_logistic_probe  # noqa: E402
from core.train.progress import Progress  # noqa: E402
from core.models.precision import cpu_amp_dtype  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "cxr": (SHARED / "chest_xray_sample", "cxr-kermany"),
    "retina": (SHARED / "retinamnist.npz", None),
    "pneumonia": (SHARED / "pneumoniamnist_train_val.npz", None),
}
LITES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


@dataclass(frozen=True)
class Recipe:
    name: str
    about: str
    framing: str = "squash"
    backbones: tuple[str, ...] = ("tf_efficientnet_lite0",)
    head: str = "logistic"          # logistic | adam-linear | adam-mlp
    views: int = 0                  # acquisition views per training image, besides the image itself
    precision: str = "auto"         # auto (bf16 where the CPU has it) | float32
    extra: dict = field(default_factory=dict)


RECIPES = {r.name: r for r in [
    Recipe("R0", "current default: centre crop, Adam linear head, 20% val split, argmax calls",
           framing="center", head="adam-linear", precision="float32"),
    Recipe("R1", "centre crop, logistic (grouped-CV C)", framing="center"),
    Recipe("R2", "squash, Adam linear head", head="adam-linear"),
    Recipe("R3", "squash, logistic (grouped-CV C)"),
    Recipe("R3f", "squash, logistic, fp32 extraction (bf16 check)", precision="float32"),
    Recipe("R4", "letterbox, logistic", framing="letterbox"),
    Recipe("R5", "squash, Adam MLP head (64 hidden)", head="adam-mlp"),
    Recipe("R6", "squash, logistic, 3 acquisition views", views=3),
    Recipe("R7", "squash, lite0+1+2 concatenated, logistic", backbones=LITES),
    Recipe("R8", "squash, lite0+1+2 concatenated, logistic, 3 views", backbones=LITES, views=3),
    Recipe("R9", "letterbox, logistic, 3 acquisition views", framing="letterbox", views=3),
    # The product's own ensemble backbone (one model, members fed from one 260 px input), as a run uses it.
    Recipe("R10", "squash, efficientnet_lite012 ensemble, logistic", backbones=("efficientnet_lite012",)),
    Recipe("R11", "squash, efficientnet_lite012 ensemble, logistic, 3 views", backbones=("efficientnet_lite012",),
           views=3),
    # Fine-tuning the last two stages of Lite0 (augmentation, AdamW, cosine; Youden on the validation split). On 2
    # CPU cores one fold takes several minutes, so this arm runs on the first fold only (--finetune-folds).
    Recipe("FT", "finetune Lite0 last 2 stages, squash, 6 epochs", head="finetune", extra={"epochs": 6}),
]}


def shifted_copy(ds: Dataset, root: Path) -> Dataset:
    """Every image re-saved as a real test set might arrive: squashed to 224 x 224 (bilinear), JPEG q75."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image_id in enumerate(ds.table["image_id"]):
        target = root / (str(image_id).replace("/", "__") + ".jpeg")
        if not target.exists():
            image = open_image(ds.table["path"].iloc[i]).convert("RGB" if ds.task.name == "dr-grading" else "L")
            image.resize((224, 224), Image.BILINEAR).save(target, format="JPEG", quality=75)
        paths.append(str(target))
    table = ds.table.copy()
    table["path"] = paths
    return Dataset(table, ds.task, str(root), ds.problems, str(root), ds.max_pixels)


class Features:
    """Per (dataset variant, backbone, framing, precision, view) feature matrices over all rows, cached."""

    def __init__(self, ws: Workspace):
        self.cache = FeatureCache(ws.cache_dir / "features")
        self.models: dict[str, torch.nn.Module] = {}
        self.seconds: dict[tuple, float] = {}

    def model(self, backbone: str):
        if backbone not in self.models:
            self.models[backbone] = create_model(backbone, 0).eval()
        return self.models[backbone]

    def get(self, ds: Dataset, backbone: str, framing: str, precision: str, views: int) -> list[torch.Tensor]:
        model = self.model(backbone)
        dtype = cpu_amp_dtype() if precision == "auto" else None
        cl = dtype is not None
        model = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        rows = np.arange(len(ds))
        prep = preprocess_config(model, framing=framing)
        prec = str(dtype or torch.float32).replace("torch.", "")
        feats, stats = cached_view_features(
            self.cache, ds, [rows] * (views + 1), model, prep, fingerprint=ds.fingerprint, backbone=backbone,
            weights_source=getattr(model, "weights_source", backbone), weights_digest=None, precision=prec,
            device=torch.device("cpu"), batch_size=64, amp_dtype=dtype, channels_last=cl)
        if stats["computed"]:
            self.seconds[(backbone, framing, prec)] = stats["seconds"] / max(1, stats["computed"])
        return feats


def recipe_features(feats: Features, ds: Dataset, recipe: Recipe) -> list[np.ndarray]:
    """View matrices (views + 1) of all rows, backbones concatenated."""
    per_backbone = [feats.get(ds, b, recipe.framing, recipe.precision, recipe.views) for b in recipe.backbones]
    return [torch.cat([pb[v] for pb in per_backbone], dim=1).numpy() for v in range(recipe.views + 1)]


def torch_head_probs(ds: Dataset, ws: Workspace, train: np.ndarray, held: np.ndarray, x: np.ndarray,
                     x_held: np.ndarray, head: str, seed: int) -> np.ndarray:
    """The product's Adam head (fit_head) with its 20% patient validation split of the training fold."""
    sub = ds.subset(train)
    tr, va = patient_split(sub, 0.2, seed=seed)
    data = TrainingData(ds, ds.fingerprint, ds.task, train[tr], train[va], held)
    cfg = RunConfig(task=ds.task.to_dict(), mode="features", head=head, seed=seed, head_fit="adam")
    events = EventWriter(None, None, enabled=False)
    ctx = RunContext(cfg=cfg, run_dir=None, workspace=ws, data=data, device=torch.device("cpu"), amp_dtype=None,
                     channels_last=False, events=events)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    model, _ = fit_head(ctx, x.shape[1], (as_t(x[train[tr]]), as_t(x[train[va]]), as_t(x_held)),
                        lambda total, done=0: Progress(events, total, done))
    with torch.no_grad():
        return torch.softmax(model.eval()(as_t(x_held)), dim=1).numpy()


def groups_of(ds: Dataset) -> np.ndarray:
    return patient_groups(ds).to_numpy()


def run_finetune(name: str, ds: Dataset, shifted: Dataset, ws: Workspace, recipe: Recipe, folds: list,
                 seed: int) -> dict:
    """The product's fine-tune mode per fold; held-out rows (plain and shifted) scored with predict()."""
    import tempfile

    from core.infer import predict
    from core.train import run_training

    n, k = len(ds), ds.task.num_classes
    out = {v: np.full((n, k), np.nan) for v in ("plain", "shifted")}
    calls = {v: np.full(n, -1) for v in ("plain", "shifted")}
    start = time.perf_counter()
    for train, held in folds:
        split = np.full(n, "train", dtype=object)
        split[held] = "test"
        fold_ds = Dataset(ds.table.assign(split=split), ds.task, ds.source, ds.problems, ds.root, ds.max_pixels)
        run_dir = Path(tempfile.mkdtemp(prefix="bench-ft-"))
        cfg = RunConfig(task=ds.task.to_dict(), mode="finetune", backbone="tf_efficientnet_lite0", unfreeze=2,
                        epochs=recipe.extra.get("epochs", 6), framing=recipe.framing, seed=seed, evaluate_test=False,
                        device="cpu")
        run_training(cfg, run_dir, ws, dataset=fold_ds, log=lambda m: None)
        for variant, source in (("plain", ds), ("shifted", shifted)):
            frame = predict(run_dir / "checkpoint", source.subset(held), ws, use_cache=False)
            out[variant][held] = frame[[f"prob_{c}" for c in ds.task.classes]].to_numpy()
            calls[variant][held] = [ds.task.class_index(c) for c in frame["predicted"]]
    return {"recipe": name, "about": recipe.about, "extract_s": 0.0, "fit_s": time.perf_counter() - start,
            "probs": out, "calls": calls, "rows": np.concatenate([h for _, h in folds])}


def run_recipe(name: str, ds: Dataset, shifted: Dataset, feats: Features, ws: Workspace, recipe: Recipe,
               folds: list, seed: int = 0) -> dict:
    if recipe.head == "finetune":
        return run_finetune(name, ds, shifted, ws, recipe, folds, seed)
    start = time.perf_counter()
    x_views = recipe_features(feats, ds, recipe)
    x_shift = recipe_features(feats, shifted, Recipe(**{**recipe.__dict__, "views": 0}))[0]
    extract_s = time.perf_counter() - start
    y = ds.label_indices()
    groups = groups_of(ds)
    n, k = len(ds), ds.task.num_classes
    out = {v: np.full((n, k), np.nan) for v in ("plain", "shifted")}
    calls = {v: np.full(n, -1) for v in ("plain", "shifted")}
    op_points = []
    fit_s = 0.0
    for train, held in folds:
        t0 = time.perf_counter()
        if recipe.head.startswith("adam"):
            head = "mlp" if recipe.head == "adam-mlp" else "linear"
            for variant, xh in (("plain", x_views[0][held]), ("shifted", x_shift[held])):
                probs = torch_head_probs(ds, ws, train, held, x_views[0], xh, head, seed)
                out[variant][held] = probs
                calls[variant][held] = probs.argmax(1)
        else:
            xs = np.concatenate([xv[train] for xv in x_views])
            ys = np.concatenate([y[train]] * len(x_views))
            gs = np.concatenate([groups[train]] * len(x_views))
            original = np.concatenate([np.ones(len(train), bool)] + [np.zeros(len(train), bool)] * recipe.views)
            fit = fit_logistic_probe(xs, ys, gs, num_classes=k, kind=ds.task.kind, seed=seed, original=original)
            op = choose_operating_point(ds.task, y[train], fit.oof_probabilities)
            op_points.append(op)
            for variant, xh in (("plain", x_views[0][held]), ("shifted", x_shift[held])):
                logits = xh @ fit.weight.T + fit.bias
                probs = np.exp(logits - logits.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
                out[variant][held] = probs
                calls[variant][held] = _calls(ds, probs, op)
        fit_s += time.perf_counter() - t0
    result = {"recipe": name, "about": recipe.about, "extract_s": extract_s, "fit_s": fit_s,
              "C": None, "probs": out, "calls": calls}
    if op_points and op_points[0] is not None:
        result["thresholds"] = [round(op.threshold, 3) for op in op_points]
    return result


def _calls(ds: Dataset, probs: np.ndarray, op) -> np.ndarray:
    from core.metrics.dashboard import calls_at_threshold

    if op is None:
        return probs.argmax(1)
    return calls_at_threshold(probs, ds.task.classes, op.binary_view, op.threshold)


def score(ds: Dataset, result: dict, baseline: dict | None) -> list[dict]:
    task = ds.task
    keep = np.sort(result["rows"]) if "rows" in result else np.arange(len(ds))  # folds the recipe ran on
    y = ds.label_indices()[keep]
    rows = []
    for variant in ("plain", "shifted"):
        probs, calls = result["probs"][variant][keep], result["calls"][variant][keep]
        row = {"recipe": result["recipe"], "variant": variant}
        views = [v for v in task.binary_views if set(v.positive) | set(v.negative) == set(task.classes)][:1]
        views += [v for v in task.binary_views if v.name == "bacterial vs viral"]
        for view in views:
            data = binary_view_data(y, probs, task.classes, view, y_pred=calls)
            auc = roc_auc(data.truth, data.scores)
            tag = "bv" if view.name == "bacterial vs viral" else "main"
            row[f"{tag}_auc"] = auc.value
            row[f"{tag}_ci"] = (auc.low, auc.high)
            if tag == "main":
                t, c = data.truth, data.calls
                row["sens"] = float((c & t).sum() / t.sum())
                row["spec"] = float((~c & ~t).sum() / (~t).sum())
            if baseline is not None and baseline is not result:
                base = binary_view_data(y, baseline["probs"][variant][keep], task.classes, view)
                test = delong_test(data.truth, data.scores, base.scores)
                row[f"{tag}_vs_R0_diff"] = test.difference.value
                row[f"{tag}_vs_R0_p"] = test.p_value
        if task.kind == "ordinal":
            row["kappa"] = float(cohen_kappa_score(y, calls, weights="quadratic"))
            expected = probs @ np.arange(task.num_classes)
            row["kappa_expected"] = float(cohen_kappa_score(y, np.rint(expected).astype(int), weights="quadratic"))
        row["accuracy"] = float((calls == y).mean())
        row["n"] = int(len(keep))
        row["extract_s"] = result["extract_s"]
        row["fit_s"] = result["fit_s"]
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="cxr,retina,pneumonia")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--workspace", default="/tmp/bench_recipes")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    parser.add_argument("--finetune-folds", type=int, default=1, help="folds the FT arm runs on (slow on a CPU)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="a class-stratified subset of at most this many images per dataset (seeded)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    ws = Workspace.open(args.workspace)
    feats = Features(ws)
    table = []
    for key in args.datasets.split(","):
        path, task = DATASETS[key]
        if not path.exists():
            print(f"skip {key}: {path} not present")
            continue
        ds = load_dataset(path, task)
        ds = Dataset(ds.table.assign(split="train"), ds.task, ds.source, ds.problems, ds.root, ds.max_pixels)
        if args.max_images and len(ds) > args.max_images:
            from core.data.splits import limited_subset

            ds = ds.subset(np.sort(limited_subset(ds, fraction=args.max_images / len(ds), seed=args.seed)))
        shifted = shifted_copy(ds, Path(args.workspace) / "shifted" / key)
        splitter = StratifiedGroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
        folds = list(splitter.split(np.zeros(len(ds)), ds.label_indices(), groups_of(ds)))
        baseline = None
        for name in args.recipes.split(","):
            recipe = RECIPES[name]
            chosen = folds[:args.finetune_folds] if recipe.head == "finetune" else folds
            result = run_recipe(name, ds, shifted, feats, ws, recipe, chosen, args.seed)
            if name == "R0":
                baseline = result
            for row in score(ds, result, baseline):
                row["dataset"] = key
                table.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
    frame = pd.DataFrame(table)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(frame.drop(columns=[c for c in frame.columns if c.endswith("_ci")]).round(3).to_string(index=False))
    print("extraction seconds per image:", {f"{b}/{f}/{p}": round(s, 4) for (b, f, p), s in feats.seconds.items()})
    if args.out:
        Path(args.out).write_text(frame.to_json(orient="records", indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
