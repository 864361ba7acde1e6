"""Site-shift study: do the model's own calls hold at another site, and which remedy brings them back?

Trains the product's features-mode recipe (frozen backbone, cached features with the default acquisition views,
core.train.probe.fit_logistic_probe, operating point by core.metrics.model_operating_point.choose_operating_point
on out-of-fold predictions) on one source and scores it on a different one:

- cross-source: chest_xray_sample (750 Kermany CXRs, 3 classes, collapsed to the product's "pneumonia vs normal"
  view) -> PneumoniaMNIST (same hospital, another export: 28 px; a class-balanced sample), and the reverse. The
  PneumoniaMNIST file and the CXR sample both come from Kermany's training split: images of the sample found in
  the .npz (28 px centre-crop correlation >= MATCH_CORRELATION) are left out of the PneumoniaMNIST pool first;
- prevalence: train on a patient-grouped half of the CXR sample thinned to TRAIN_PREVALENCE pneumonia, test on
  the other half's patients at 10%, 30% and 60% (two folds, pooled);
- shifts the acquisition views do not cover, applied to held-out CXR images (two folds, pooled): gamma and
  contrast curves, tighter and wider crop margins, a letterboxed 16:9 export, rotation by 5 degrees, burned-in
  text markers; "resaved" (the same JPEG re-encoding with no change) is the control.

Each arm reports AUC (DeLong; two-fold arms: the image-weighted mean of the folds' AUCs), sensitivity and
specificity at the model's own operating point (Wilson), and the out-of-fold values on the training source, before
and after each remedy:
  em        EM prior adaptation (core.metrics.prior_shift: em_prevalence, adjust_to_prior), the stored threshold
            kept as a number on the adjusted scale;
  em-rule   the product's --unlabelled: the same estimate made view-consistent (view_consistent_prior: one ratio
            per side of the view) and the threshold moved by adjust_threshold (the rule kept: the calls of none);
  std       feature standardisation against the site's own statistics (z-scored with the site mean/std, mapped
            to the training features' mean/std), then the same head and threshold;
  std+em    both;
  std(q)    standardisation to the training classes' statistics mixed at the prevalence EM estimates on the raw
            probabilities (not the training mix), then the same head and threshold;
  refit     labelled re-fitting on 40 site images (--refit-n) (core.infer.recalibrate: split_sample, fit_temperature,
            scale_probabilities, then choose_operating_point), scored on the rest of the site's images; repeated
            over --draws samples (the table shows draw 0 with its intervals and the share of draws that meet the
            target).

    .venv/bin/python benchmarks/bench_sites.py [--quick] [--backbone efficientnet_lite012] [--out sites.json]
        [--cache workspace/bench_sites]

Without labels a shift of the features along the class direction looks the same as a change of prevalence, so each
label-free remedy assumes one of the two: em-rule a pure prior shift (calls unchanged), std a fixed prior (the site
mean is the training mean), std(q) that the EM prior on the unadapted probabilities is right. The prevalence and
acquisition-shift arms test each assumption where it fails.

Features are cached under --cache (default workspace/bench_sites, git-ignored): a second run skips extraction and
spends its time on the probe fits and EM bootstraps (it prints how long each part took).
Everything printed is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont, ImageOps  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402

from core.data import Dataset  # noqa: E402
from core.data.images import open_image  # noqa: E402
from core.data.readers.medmnist import PNEUMONIA_BINARY  # noqa: E402
from core.data.splits import patient_groups  # noqa: E402
from core.data.tasks import Task  # noqa: E402
from core.infer.recalibrate import fit_temperature, scale_probabilities, split_sample  # noqa: E402
from core.metrics.dashboard import calls_at_threshold  # noqa: E402
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics  # noqa: E402
from core.metrics.model_operating_point import ModelOperatingPoint, choose_operating_point  # noqa: E402
from core.metrics.operating import BinaryScores  # noqa: E402
from core.metrics.prior_shift import (  # noqa: E402
    adjust_threshold,
    adjust_to_prior,
    em_prevalence,
    view_consistent_prior,
)
from core.metrics.referral import referral_score  # noqa: E402
from core.metrics.intervals import normal_quantile  # noqa: E402
from core.metrics.roc import roc_auc  # noqa: E402
from core.train.probe import fit_logistic_probe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CXR_PATH = SHARED / "chest_xray_sample"
PMNIST_PATH = SHARED / "pneumoniamnist_train_val.npz"
DEFAULT_CACHE = ROOT / "workspace" / "bench_sites"

# The CXR sample's images are also in the PneumoniaMNIST file (both from Kermany's training split). Measured on the
# 750 sample images against the 4,406 .npz images (28 px centre crop, bicubic, Pearson correlation): 595 have a
# partner at >= 0.97 (every one with the same label), 150 have none above 0.95, 5 fall between. Everything at or
# above 0.95 is treated as the same film and left out of the PneumoniaMNIST pool.
MATCH_CORRELATION = 0.95
TRAIN_PREVALENCE = 0.75          # the prevalence arm's training mix (Kermany's own training split is 74% pneumonia)
TEST_PREVALENCES = (0.10, 0.30, 0.60)
REFIT_N = 40
TARGET_SENS, TARGET_SPEC = 0.90, 0.85   # the bar for labelled re-fitting
WITHIN = 0.05                           # the bar for label-free adaptation (|site - out-of-fold|)
LABEL_FREE = ("em", "em-rule", "std", "std+em", "std(q)")
REMEDIES = ("none",) + LABEL_FREE + ("refit",)
VIEW_NAME = "pneumonia vs normal"


# -- shifts the acquisition views do not cover -------------------------------------------------------------------
def _gamma(g: float):
    table = [round(255 * (i / 255) ** g) for i in range(256)]
    return lambda im, rng: im.point(table)


def _low_contrast(im: Image.Image, rng) -> Image.Image:
    return im.point([round(64 + i / 2) for i in range(256)])          # the full range squeezed into 64..191


def _crop_tight(im: Image.Image, rng) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * 0.1), round(h * 0.1)
    return im.crop((dx, dy, w - dx, h - dy))                           # 80% of each side kept


def _margin_wide(im: Image.Image, rng) -> Image.Image:
    w, h = im.size
    return ImageOps.expand(im, border=(round(w * 0.12), round(h * 0.12)), fill=0)


def _letterbox(im: Image.Image, rng) -> Image.Image:
    w, h = im.size
    if w * 9 < h * 16:                                                 # taller than 16:9: bars left and right
        canvas = Image.new("L", (round(h * 16 / 9), h), 0)
        canvas.paste(im, ((canvas.width - w) // 2, 0))
    else:
        canvas = Image.new("L", (w, round(w * 9 / 16)), 0)
        canvas.paste(im, (0, (canvas.height - h) // 2))
    return canvas


def _rotate(im: Image.Image, rng) -> Image.Image:
    return im.rotate(5.0 if rng.random() < 0.5 else -5.0, resample=Image.BICUBIC, fillcolor=0)


def _text_markers(im: Image.Image, rng) -> Image.Image:
    """A side marker (L/R in a box) in a random corner and a burned-in line of date, time and accession number."""
    im = im.copy()
    w, h = im.size
    draw = ImageDraw.Draw(im)
    big = ImageFont.load_default(size=max(10, h // 9))
    small = ImageFont.load_default(size=max(8, h // 28))
    letter = "R" if rng.random() < 0.5 else "L"
    x0 = round(w * 0.04) if rng.random() < 0.5 else round(w * 0.84)
    y0 = round(h * 0.04) if rng.random() < 0.5 else round(h * 0.80)
    box = draw.textbbox((x0, y0), letter, font=big)
    draw.rectangle((box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4), outline=255, width=2)
    draw.text((x0, y0), letter, fill=255, font=big)
    line = (f"PORTABLE AP  20{rng.integers(10, 24)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} "
            f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}  ACC {rng.integers(100000, 999999)}")
    ty = round(h * 0.95) - small.size if y0 < h // 2 else round(h * 0.02)
    draw.text((round(w * 0.03), ty), line, fill=255, font=small)
    return im


SHIFTS = {
    "resaved": lambda im, rng: im,
    "gamma 0.6": _gamma(0.6),
    "gamma 1.6": _gamma(1.6),
    "low contrast": _low_contrast,
    "crop 80%": _crop_tight,
    "margin +12%": _margin_wide,
    "letterbox 16:9": _letterbox,
    "rotate 5 deg": _rotate,
    "text markers": _text_markers,
}


def shifted_dataset(ds: Dataset, rows: np.ndarray, shift: str, root: Path) -> Dataset:
    """`rows` of ds with `shift` applied (grey, JPEG q95: 'resaved' is the re-encoding alone), written once."""
    folder = root / shift.replace(" ", "_").replace(":", "x").replace("%", "pct").replace("+", "plus")
    folder.mkdir(parents=True, exist_ok=True)
    table = ds.table.iloc[rows].copy()
    paths = []
    for image_id, path in zip(table["image_id"], table["path"], strict=True):
        target = folder / (str(image_id).replace("/", "__").rsplit(".", 1)[0] + ".jpeg")
        if not target.exists():
            rng = np.random.default_rng(zlib.crc32(f"{shift}|{image_id}".encode()))
            image = SHIFTS[shift](open_image(path).convert("L"), rng)
            tmp = target.with_suffix(".part")
            image.save(tmp, format="JPEG", quality=95)
            tmp.replace(target)
        paths.append(str(target))
    table["path"] = paths
    return Dataset(table, ds.task, str(folder), [], str(folder), ds.max_pixels)


# -- data ----------------------------------------------------------------------------------------------------------
def pmnist_matches(cxr: Dataset, npz_path: Path) -> np.ndarray:
    """Per PneumoniaMNIST row (train then val, the reader's order): whether a CXR sample image is the same film."""
    with np.load(npz_path) as z:
        pm = np.concatenate([z["train_images"], z["val_images"]]).reshape(-1, 28 * 28).astype(float)

    def unit(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=1, keepdims=True)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)

    small = []
    for path in cxr.table["path"]:
        im = open_image(path).convert("L")
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)   # MedMNIST: centre crop, 28 px
        small.append(np.asarray(im.crop(box).resize((28, 28), Image.BICUBIC), dtype=float).ravel())
    return (unit(np.array(small)) @ unit(pm).T >= MATCH_CORRELATION).any(axis=0)


def balanced_rows(ds: Dataset, per_class: int, exclude: np.ndarray, seed: int) -> np.ndarray:
    """per_class images of each class among the rows not excluded (seeded; a smaller n is a prefix of a larger)."""
    keep = np.flatnonzero(~exclude)
    rng = np.random.default_rng(seed)
    labels = ds.table["label"].to_numpy()
    out = []
    for label in sorted(set(labels[keep])):
        rows = keep[labels[keep] == label]
        out.append(rows[rng.permutation(len(rows))][:per_class])
    return np.sort(np.concatenate(out))


class Features:
    """Backbone features of a dataset's rows (view 0 = as stored, 1..v = the product's acquisition views), through
    the product's feature cache; `fingerprint` pins the cache key to the whole source so subsets share it."""

    def __init__(self, backbone: str, cache_root: Path):
        import torch

        from core.models import create_model, preprocess_config
        from core.models.precision import inference_precision
        from core.models.preprocess import DEFAULT_FRAMING
        from core.train.features import FeatureCache

        self.torch = torch
        self.backbone = backbone
        self.cache = FeatureCache(cache_root / "features")
        self.device = torch.device("cpu")
        self.model = create_model(backbone, 0).eval()
        self.amp, self.channels_last = inference_precision(self.device, "auto")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The product's default framing and the backbone's own input size (RunConfig: framing None, image_size None).
        self.preprocessing = preprocess_config(backbone, None, framing=DEFAULT_FRAMING)
        self.computed = 0
        self.seconds = 0.0

    def get(self, ds: Dataset, rows: np.ndarray, views: int, fingerprint: str | None = None) -> list[np.ndarray]:
        from core.train.features import cached_view_features

        precision = str(self.amp or self.torch.float32).replace("torch.", "")
        feats, stats = cached_view_features(
            self.cache, ds, [np.asarray(rows)] * (views + 1), self.model, self.preprocessing,
            fingerprint=fingerprint or ds.fingerprint, backbone=self.backbone,
            weights_source=getattr(self.model, "weights_source", self.backbone), weights_digest=None,
            precision=precision, device=self.device, batch_size=64, amp_dtype=self.amp,
            channels_last=self.channels_last)
        self.computed += stats["computed"]
        self.seconds += stats["seconds"] if stats["computed"] else 0.0
        if stats["computed"]:
            print(f"  features: {stats['computed']} computed in {stats['seconds']:.0f} s, {stats['cached']} cached "
                  f"({Path(ds.source).name or ds.source})", flush=True)
        return [f.numpy().astype(np.float64) for f in feats]


# -- the model and the remedies --------------------------------------------------------------------------------------
@dataclass
class Fitted:
    """A head fitted on one source the product's way, with what the remedies need from training."""

    task: Task
    weight: np.ndarray
    bias: np.ndarray
    op: ModelOperatingPoint
    prior: np.ndarray          # class frequencies the (unbalanced) probe is calibrated to
    mean: np.ndarray           # training features (as stored) per dimension
    std: np.ndarray
    oof_scores: np.ndarray     # out-of-fold view score and truth on the training images
    oof_truth: np.ndarray
    C: float
    class_mean: np.ndarray     # (k, d) training features per class, for the class-mix standardisation
    class_var: np.ndarray

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(x @ self.weight.T + self.bias, axis=1)

    @property
    def positive(self) -> list[int]:
        return [self.task.class_index(c) for c in self.op.positive]

    def score(self, probs: np.ndarray) -> np.ndarray:
        return referral_score(probs, self.task.classes, self.op.positive)

    def calls(self, probs: np.ndarray, threshold: float) -> np.ndarray:
        """Positive (pneumonia) calls by the product's rule at `threshold` on the view."""
        return np.isin(calls_at_threshold(probs, self.task.classes, self.op.binary_view, threshold), self.positive)


def fit_source(task: Task, x_views: list[np.ndarray], y: np.ndarray, groups: np.ndarray, seed: int = 0) -> Fitted:
    """fit_logistic_probe on the images and their acquisition views, operating point on the out-of-fold probs."""
    n = len(y)
    x = np.concatenate(x_views)
    original = np.concatenate([np.ones(n, bool)] + [np.zeros(n, bool)] * (len(x_views) - 1))
    fit = fit_logistic_probe(x, np.concatenate([y] * len(x_views)), np.concatenate([groups] * len(x_views)),
                             num_classes=task.num_classes, kind=task.kind, seed=seed, original=original)
    op = choose_operating_point(task, y, fit.oof_probabilities)
    if op is None:
        raise ValueError(f"{task.name}: no operating point (the training data hold one side of the view only)")
    prior = np.bincount(y, minlength=task.num_classes) / n
    positive = [task.class_index(c) for c in op.positive]
    x0 = x_views[0]
    present = [x0[y == k] if (y == k).any() else x0 for k in range(task.num_classes)]
    return Fitted(task, fit.weight, fit.bias, op, prior, x0.mean(axis=0), x0.std(axis=0),
                  referral_score(fit.oof_probabilities, task.classes, op.positive), np.isin(y, positive), fit.C,
                  np.array([a.mean(axis=0) for a in present]), np.array([a.var(axis=0) for a in present]))


def standardised(fitted: Fitted, x_site: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Site features z-scored with the site's own mean/std, then given the training features' mean/std; with
    `prior`, the mean/std of the training classes mixed at that prior instead of the training mix."""
    mean, std = fitted.mean, fitted.std
    if prior is not None:
        mean = prior @ fitted.class_mean
        std = np.sqrt(np.maximum(prior @ (fitted.class_var + fitted.class_mean ** 2) - mean ** 2, 0.0))
    sd = x_site.std(axis=0)
    z = (x_site - x_site.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
    return z * std + mean


@dataclass
class Part:
    """One fitted model and the site images it is scored on (an arm pools one or two parts)."""

    fitted: Fitted
    x_site: np.ndarray
    truth: np.ndarray            # pneumonia yes/no per site image
    site: Dataset                # the site's rows (labels, patients) for the labelled sample
    groups: np.ndarray


@dataclass
class Outcome:
    """Per remedy, pooled over parts: truth, scores, calls; prevalence estimates; refit draws."""

    truth: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)
    est_prev: dict = field(default_factory=dict)
    draws: list = field(default_factory=list)     # per draw: (sens, spec) pooled over parts, on the rest


def _em_adjusted(fitted: Fitted, probs: np.ndarray, groups: np.ndarray, resamples: int):
    est = em_prevalence(probs, fitted.prior, patient_ids=groups, n_resamples=resamples,
                        classes=fitted.task.classes)
    return est, adjust_to_prior(probs, fitted.prior, est.prior)


def _pneumonia_share(fitted: Fitted, est) -> float:
    return float(sum(est.prior[i] for i in fitted.positive))


def run_part(part: Part, draws: int, resamples: int, out: Outcome, refit_n: int = REFIT_N) -> None:
    """Every remedy on one part; appends its truth, scores and calls to `out`. The labelled refit needs a site of
    more than twice `refit_n` images (a sample and a rest to score on); smaller sites are left out of it."""
    f = part.fitted
    t = f.op.threshold
    base = f.probabilities(part.x_site)
    std = f.probabilities(standardised(f, part.x_site))
    est, em = _em_adjusted(f, base, part.groups, resamples)
    est_std, std_em = _em_adjusted(f, std, part.groups, resamples)
    q_view = view_consistent_prior(f.prior, est.prior, f.positive)
    em_view = adjust_to_prior(base, f.prior, q_view)
    moved = adjust_threshold(t, f.positive, f.prior, q_view)
    std_q = f.probabilities(standardised(f, part.x_site, np.asarray(est.prior)))
    results = {"none": (base, t), "em": (em, t), "em-rule": (em_view, moved), "std": (std, t), "std+em": (std_em, t),
               "std(q)": (std_q, t)}
    for remedy, (probs, threshold) in results.items():
        _add(out, remedy, part.truth, f.score(probs), f.calls(probs, threshold))
    out.est_prev.setdefault("em", []).append((_pneumonia_share(f, est), len(part.truth), est))
    out.est_prev.setdefault("std+em", []).append((_pneumonia_share(f, est_std), len(part.truth), est_std))
    # Labelled re-fitting (core.infer.recalibrate's pieces) on the view: the site's labels are pneumonia yes/no.
    score = f.score(base)
    two = np.column_stack([1.0 - score, score])
    truth = part.truth.astype(np.int64)
    for d in range(draws if len(part.site) > 2 * refit_n else 0):
        sample, rest = split_sample(part.site, refit_n, seed=d)
        temperature = fit_temperature(two[sample], truth[sample])
        scaled = scale_probabilities(two, temperature)
        op = choose_operating_point(PNEUMONIA_BINARY, truth[sample], scaled[sample],
                                    source=f"a site sample of {refit_n}")
        calls = scaled[rest, 1] >= op.threshold if op is not None else f.calls(base[rest], t)
        if d == 0:
            _add(out, "refit", part.truth[rest], scaled[rest, 1], calls)
            _add(out, "none@rest", part.truth[rest], score[rest], f.calls(base[rest], t))
        if len(out.draws) <= d:
            out.draws.append([])
        out.draws[d].append(counts_from_labels(part.truth[rest], calls))


def _add(out: Outcome, remedy: str, truth, scores, calls) -> None:
    for store, value in ((out.truth, truth), (out.scores, scores), (out.calls, calls)):
        store.setdefault(remedy, []).append(np.asarray(value))


def _iv(interval) -> dict:
    return {"value": float(interval.value), "low": float(interval.low), "high": float(interval.high),
            "method": interval.method}


def combined_auc(truths: list, scores: list) -> dict:
    """AUC of one part (DeLong), or of several parts (folds: one model each) as the image-weighted mean of their
    DeLong AUCs with the variances combined. Pooling the scores of two models instead would rank one fold's images
    against the other's, so a remedy that moves each fold's scores by its own monotone map would change the AUC."""
    estimates = [roc_auc(t, s) for t, s in zip(truths, scores, strict=True)]
    if len(estimates) == 1:
        return _iv(estimates[0])
    usable = [(e, len(t)) for e, t in zip(estimates, truths, strict=True) if math.isfinite(e.value)]
    total = sum(n for _, n in usable)
    value = sum(e.value * n for e, n in usable) / total
    variance = sum(e.variance * (n / total) ** 2 for e, n in usable)
    half = normal_quantile(0.95) * math.sqrt(variance) if math.isfinite(variance) else math.nan
    return {"value": float(value), "low": max(0.0, value - half), "high": min(1.0, value + half),
            "method": f"DeLong per fold ({len(usable)}), image-weighted mean"}


def measure(truths: list, scores: list, calls: list) -> dict:
    """AUC (combined_auc) and sensitivity/specificity (Wilson) of the calls pooled over the parts."""
    truth = np.concatenate(truths)
    m = diagnostic_metrics(*counts_from_labels(truth, np.concatenate(calls)))
    return {"n": int(len(truth)), "prevalence": float(np.mean(truth)), "auc": combined_auc(truths, scores),
            "sensitivity": _iv(m.sensitivity), "specificity": _iv(m.specificity)}


def arm_rows(name: str, parts: list[Part], draws: int, resamples: int, refit_n: int = REFIT_N) -> list[dict]:
    """The arm's table rows: out of fold (training source), then each remedy on the site, pooled over parts."""
    out = Outcome()
    for part in parts:
        run_part(part, draws, resamples, out, refit_n)
    oof = measure([p.fitted.oof_truth for p in parts], [p.fitted.oof_scores for p in parts],
                  [p.fitted.oof_scores >= p.fitted.op.threshold for p in parts])
    rows = [{"arm": name, "remedy": "out-of-fold", **oof}]
    for remedy in REMEDIES + ("none@rest",):
        if remedy not in out.truth:
            continue                        # no part large enough for the labelled sample
        row = {"arm": name, "remedy": remedy, **measure(out.truth[remedy], out.scores[remedy], out.calls[remedy])}
        row["d_sens"] = row["sensitivity"]["value"] - oof["sensitivity"]["value"]
        row["d_spec"] = row["specificity"]["value"] - oof["specificity"]["value"]
        if remedy in out.est_prev:
            shares = out.est_prev[remedy]
            row["est_prevalence"] = float(sum(s * n for s, n, _ in shares) / sum(n for _, n, _ in shares))
            row["em_estimates"] = [e.to_dict() for _, _, e in shares]
        if remedy == "refit":
            row["refit_n"] = refit_n
            # What any threshold (one per fold) could do with every site label known: the refit's ceiling.
            points = [BinaryScores(t, sc).threshold_for_sensitivity(TARGET_SENS)
                      for t, sc in zip(out.truth["none"], out.scores["none"], strict=True)]
            negatives = sum(int((~t).sum()) for t in out.truth["none"])
            row["ceiling_spec_at_target_sens"] = float(sum(p.specificity * int((~t).sum()) for p, t in
                                                           zip(points, out.truth["none"], strict=True)) / negatives)
            per_draw = []
            for counts in out.draws:
                tp, fp, fn, tn = (sum(c[i] for c in counts) for i in range(4))
                per_draw.append((tp / max(tp + fn, 1), tn / max(tn + fp, 1)))
            sens, spec = np.array(per_draw).T
            row["draws"] = {"n": len(per_draw), "median_sensitivity": float(np.median(sens)),
                            "median_specificity": float(np.median(spec)),
                            "share_meeting_target": float(np.mean((sens >= TARGET_SENS) & (spec >= TARGET_SPEC))),
                            "target": f"sens >= {TARGET_SENS}, spec >= {TARGET_SPEC} on the rest"}
        rows.append(row)
    return rows


# -- the arms -----------------------------------------------------------------------------------------------------
def _views(feats: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    return [f[rows] for f in feats]


def prevalence_rows(labels_binary: np.ndarray, groups: np.ndarray, rows: np.ndarray, prevalence: float,
                    seed: int) -> np.ndarray:
    """Rows thinned (whole patients, seeded) to `prevalence` positives: every negative kept and positives drawn
    when there are enough of them, else every positive kept and negatives drawn."""
    rng = np.random.default_rng(seed)
    pos, neg = rows[labels_binary[rows]], rows[~labels_binary[rows]]
    fixed, pool, share = neg, pos, prevalence
    if round(len(neg) * prevalence / (1 - prevalence)) > len(pos):
        fixed, pool, share = pos, neg, 1 - prevalence
    want = round(len(fixed) * share / (1 - share))
    chosen = []
    for g in rng.permutation(np.unique(groups[pool])):
        if len(chosen) >= want:
            break
        chosen.extend(pool[groups[pool] == g].tolist())
    return np.sort(np.concatenate([fixed, np.array(chosen, dtype=np.int64)]))   # whole patients: may pass by one


def build_arms(args, feats: Features, log=print) -> dict[str, list[Part]]:
    """The arms' parts (fitted models and site features); extraction goes through the feature cache."""
    from core.data import load_dataset

    cxr = load_dataset(args.cxr, "cxr-kermany")
    cxr = Dataset(cxr.table.assign(split="train"), cxr.task, cxr.source, cxr.problems, cxr.root, cxr.max_pixels)
    y_cxr = cxr.label_indices()
    pos_cxr = np.isin(y_cxr, [cxr.task.class_index(c) for c in ("BACTERIAL", "VIRAL")])
    g_cxr = patient_groups(cxr).to_numpy()
    log(f"chest_xray_sample: {len(cxr)} images, {len(np.unique(g_cxr))} patients, {pos_cxr.mean():.0%} pneumonia")
    everything = np.arange(len(cxr))
    cxr_feats = feats.get(cxr, everything, args.views)

    folds = list(StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=args.seed)
                 .split(np.zeros(len(cxr)), y_cxr, g_cxr))[:1 if args.quick else 2]
    arms: dict[str, list[Part]] = {}

    # Cross-source: the whole CXR sample <-> a balanced PneumoniaMNIST sample that shares no film with it.
    if args.pmnist.exists():
        pm_all = load_dataset(args.pmnist, None)
        same = pmnist_matches(cxr, args.pmnist)
        rows = balanced_rows(pm_all, args.pmnist_n // 2, same, args.seed)
        pm = pm_all.subset(rows)
        log(f"PneumoniaMNIST: {int(same.sum())} of {len(pm_all)} images are CXR-sample films (left out); "
            f"{len(pm)} drawn, balanced")
        pm_feats = feats.get(pm, np.arange(len(pm)), args.views, fingerprint=pm_all.fingerprint)
        pm_pos = pm.table["label"].to_numpy() == "PNEUMONIA"
        pm_groups = patient_groups(pm).to_numpy()
        m_cxr = fit_source(cxr.task, cxr_feats, y_cxr, g_cxr, args.seed)
        arms["CXR -> PneumoniaMNIST"] = [Part(m_cxr, pm_feats[0], pm_pos, pm, pm_groups)]
        m_pm = fit_source(pm.task, pm_feats, pm.label_indices(), pm_groups, args.seed)
        arms["PneumoniaMNIST -> CXR"] = [Part(m_pm, cxr_feats[0], pos_cxr, cxr, g_cxr)]
    else:
        log(f"skip the cross-source arms: {args.pmnist} not present")

    # Prevalence: train thinned to TRAIN_PREVALENCE, test the other patients at each prevalence.
    prevalence_parts = {p: [] for p in TEST_PREVALENCES}
    for k, (train, test) in enumerate(folds):
        tr = prevalence_rows(pos_cxr, g_cxr, train, TRAIN_PREVALENCE, args.seed + k)
        model = fit_source(cxr.task, _views(cxr_feats, tr), y_cxr[tr], g_cxr[tr], args.seed)
        for p in TEST_PREVALENCES:
            te = prevalence_rows(pos_cxr, g_cxr, test, p, args.seed + 10 * k + 1)
            prevalence_parts[p].append(Part(model, cxr_feats[0][te], pos_cxr[te], cxr.subset(te), g_cxr[te]))
    for p, parts in prevalence_parts.items():
        arms[f"prevalence {TRAIN_PREVALENCE:.0%} -> {p:.0%}"] = parts

    # Shifts on held-out CXR images: the model of each fold, its test patients shifted.
    models = [fit_source(cxr.task, _views(cxr_feats, train), y_cxr[train], g_cxr[train], args.seed)
              for train, _ in folds]
    arms["held-out CXR (no shift)"] = [Part(m, cxr_feats[0][te], pos_cxr[te], cxr.subset(te), g_cxr[te])
                                       for m, (_, te) in zip(models, folds, strict=True)]
    for shift in args.shifts:
        parts = []
        for m, (_, te) in zip(models, folds, strict=True):
            shifted = shifted_dataset(cxr, te, shift, args.cache / "shifted")
            x = feats.get(shifted, np.arange(len(shifted)), 0)[0]
            parts.append(Part(m, x, pos_cxr[te], cxr.subset(te), g_cxr[te]))
        arms[f"shift: {shift}"] = parts
    return arms


# -- output -------------------------------------------------------------------------------------------------------
def _ci(iv: dict) -> str:
    if not (math.isfinite(iv["low"]) and math.isfinite(iv["high"])):
        return f"{iv['value']:.3f}"
    return f"{iv['value']:.3f} [{iv['low']:.2f}-{iv['high']:.2f}]"


def table_text(rows: list[dict]) -> str:
    lines = [f"{'arm':<30} {'remedy':<11} {'n':>4} {'prev':>5} {'est':>5}  {'AUC (DeLong)':<19} "
             f"{'sens (Wilson)':<19} {'spec (Wilson)':<19} {'dsens':>6} {'dspec':>6}  note"]
    last = None
    for r in rows:
        if r["arm"] != last and last is not None:
            lines.append("")
        last = r["arm"]
        est = f"{r['est_prevalence']:.2f}" if "est_prevalence" in r else ""
        d = (f"{r['d_sens']:+.3f} {r['d_spec']:+.3f}" if "d_sens" in r else f"{'':>6} {'':>6}")
        note = ""
        if r["remedy"] in LABEL_FREE or r["remedy"] == "none":
            note = "within 0.05" if max(abs(r["d_sens"]), abs(r["d_spec"])) <= WITHIN else \
                f"misses by {max(abs(r['d_sens']), abs(r['d_spec'])) - WITHIN:.3f}"
        if r["remedy"] == "refit":
            dr = r["draws"]
            note = (f"{'meets' if _meets(r) else 'misses'} the target; {dr['share_meeting_target']:.0%} of "
                    f"{dr['n']} draws do (median {dr['median_sensitivity']:.3f}/{dr['median_specificity']:.3f}); "
                    f"best threshold on all site labels: spec {r['ceiling_spec_at_target_sens']:.3f} at sens "
                    f"{TARGET_SENS}")
        if r["remedy"] == "none@rest":
            note = "no remedy, on the same rest as the refit"
        name = f"refit{r['refit_n']}" if r["remedy"] == "refit" else r["remedy"]
        lines.append(f"{r['arm']:<30} {name:<11} {r['n']:>4} {r['prevalence']:>5.2f} {est:>5}  "
                     f"{_ci(r['auc']):<19} {_ci(r['sensitivity']):<19} {_ci(r['specificity']):<19} {d}  {note}")
    return "\n".join(lines)


def _meets(row: dict) -> bool:
    return row["sensitivity"]["value"] >= TARGET_SENS and row["specificity"]["value"] >= TARGET_SPEC


def gap(row: dict) -> float:
    return max(abs(row["d_sens"]), abs(row["d_spec"]))


def verdicts(rows: list[dict]) -> list[str]:
    """Per arm the label-free remedy closest to the out-of-fold values; per remedy where it fails; the done checks."""
    by_arm: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], {})[r["remedy"]] = r
    out = ["closest to out-of-fold, label-free (max |d sens|, |d spec|):"]
    for arm, rs in by_arm.items():
        best = min(("none",) + LABEL_FREE, key=lambda k: gap(rs[k]))
        out.append(f"  {arm:<30} {best:<8} {gap(rs[best]):.3f}   (none {gap(rs['none']):.3f})")
    for remedy in LABEL_FREE:
        fails = [f"{arm} ({gap(rs[remedy]):.3f})" for arm, rs in by_arm.items() if gap(rs[remedy]) > WITHIN]
        out.append(f"{remedy}: misses 0.05 in {len(fails)} of {len(by_arm)} arms" + (": " + ", ".join(fails)
                                                                                  if fails else ""))
    refitted = {arm: rs["refit"] for arm, rs in by_arm.items() if "refit" in rs}
    refit_fails = [arm for arm, r in refitted.items() if not _meets(r)]
    out.append(f"refit: misses sens >= {TARGET_SENS} and spec >= {TARGET_SPEC} (draw 0) in {len(refit_fails)} of "
               f"{len(refitted)} arms" + (": " + ", ".join(refit_fails) if refit_fails else ""))
    out.append("done checks:")
    for arm, rs in by_arm.items():
        if arm.startswith("CXR -> ") or arm.startswith("prevalence"):
            best = min(LABEL_FREE, key=lambda k: gap(rs[k]))
            out.append(f"  {arm}: label-free within 0.05 of out-of-fold? "
                       f"{'yes' if gap(rs[best]) <= WITHIN else 'no'} (best {best}: d sens {rs[best]['d_sens']:+.3f},"
                       f" d spec {rs[best]['d_spec']:+.3f})")
        if arm.startswith("CXR -> ") and "refit" in rs:
            r = rs["refit"]
            out.append(f"  {arm}: refit on {r['refit_n']} reaches sens >= {TARGET_SENS} and spec >= {TARGET_SPEC}? "
                       f"{'yes' if _meets(r) else 'no'} (draw 0: {r['sensitivity']['value']:.3f}/"
                       f"{r['specificity']['value']:.3f}; {r['draws']['share_meeting_target']:.0%} of draws; no "
                       f"threshold does better than spec {r['ceiling_spec_at_target_sens']:.3f} at sens {TARGET_SENS} "
                       "there)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0",
                        help="one registered backbone (default Lite0; efficientnet_lite012 is the product's default "
                             "ensemble, about 3x the extraction time)")
    parser.add_argument("--quick", action="store_true",
                        help="one fold instead of two for the prevalence and shift arms, 300 PneumoniaMNIST images, "
                             "10 refit draws, 100 EM resamples")
    parser.add_argument("--views", type=int, default=None, help="acquisition views per training image (default: the "
                        "product's default, core.train.config.DEFAULT_VIEWS)")
    parser.add_argument("--pmnist-n", type=int, default=None, help="PneumoniaMNIST images, balanced (default 600)")
    parser.add_argument("--draws", type=int, default=None, help="labelled samples drawn (default 20)")
    parser.add_argument("--refit-n", type=int, default=REFIT_N, help="labelled site images per sample (default 40)")
    parser.add_argument("--shifts", default=",".join(SHIFTS), help="comma-separated, from: " + ", ".join(SHIFTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cxr", type=Path, default=CXR_PATH)
    parser.add_argument("--pmnist", type=Path, default=PMNIST_PATH)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    from core.train.config import DEFAULT_VIEWS

    args.views = DEFAULT_VIEWS if args.views is None else args.views
    args.pmnist_n = args.pmnist_n or (300 if args.quick else 600)
    args.draws = args.draws or (10 if args.quick else 20)
    args.resamples = 100 if args.quick else 200
    args.shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
    unknown = [s for s in args.shifts if s not in SHIFTS]
    if unknown:
        parser.error(f"unknown shift(s) {unknown}; choose from {', '.join(SHIFTS)}")
    if not args.cxr.exists():
        print(f"{args.cxr} not present: this benchmark needs the shared chest X-ray sample")
        return 1
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    feats = Features(args.backbone, args.cache)
    print(f"backbone {args.backbone}, framing {feats.preprocessing['framing']}, input "
          f"{feats.preprocessing['input_size'][1]} px, {args.views} acquisition views, precision "
          f"{str(feats.amp or 'float32').replace('torch.', '')}", flush=True)
    arms = build_arms(args, feats)
    built = time.perf_counter()
    rows = []
    for name, parts in arms.items():
        rows += arm_rows(name, parts, args.draws, args.resamples, args.refit_n)
    print()
    print(table_text(rows))
    print()
    print("\n".join(verdicts(rows)))
    print(f"\nfeatures computed this run: {feats.computed} images in {feats.seconds:.0f} s; fits and data "
          f"{built - start - feats.seconds:.0f} s; remedies and metrics {time.perf_counter() - built:.0f} s")
    if args.out:
        payload = {"backbone": args.backbone, "views": args.views, "quick": args.quick, "seed": args.seed,
                   "rows": rows, "verdicts": verdicts(rows)}
        args.out.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
