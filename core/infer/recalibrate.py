"""Site recalibration: refit a model's operating point (and temperature) on a small labelled sample of a new site.

A threshold chosen on the training distribution does not carry over to another site's scanners and export
pipeline. Given 30-60 labelled images from the new site, the operating point is refitted on them by the same rule
as in training, optionally after temperature scaling (kept only when it lowers the sample's log loss), and the
result is a NEW run: same backbone weights, the head's last layer divided by the temperature, the new operating
point in its card, the recalibration recorded. The source run is never changed. When the sample is drawn from a
larger labelled set (`sample_size`), the rest of that set shows sensitivity and specificity before and after.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from core.data import Dataset
from core.data.splits import limited_subset
from core.data.tasks import Task, task_from_dict
from core.errors import InputError
from core.infer.predictions import model_calls
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.model_operating_point import (
    DEFAULT_RULE,
    ModelOperatingPoint,
    choose_operating_point,
    operating_view,
)
from core.metrics.prior_shift import (adjust_threshold, check_prior, em_prevalence, prior_log_ratio,
                                      view_consistent_prior)
from core.metrics.selective import referral_card
from core.store import Workspace, audit_trail
from core.store.access import SHELL, Actor, require

MIN_SAMPLE = 10
NO_BAND_WITHOUT_LABELS = ("no referral band: a band's error rate among the calls it makes was calibrated on the "
                          "training images, and with no labels nothing shows it holds at this site; recalibrate on "
                          "labelled site images to refer cases here")
MIN_UNLABELLED = 30  # below this, the EM prior's bootstrap interval is too wide to move an operating point on
ADAPT_METHODS = ("em", "standardise")
STANDARDISE_METHOD = "feature standardisation"
# One owner of the warning that goes with feature standardisation: the CLI prints it, the card stores it, the pages
# show it as help. The numbers are benchmarks/bench_sites.py's (specificity at the model's own point).
STANDARDISE_WARNING = (
    "Feature standardisation assumes this site's class mix is like the training images'. It maps each backbone "
    "feature's mean and spread at the site onto training's, so a site with another prevalence (whose features move "
    "with its class mix) gets its calls moved the wrong way. In the site-shift benchmark it helped on export and "
    "acquisition changes at a similar prevalence (specificity: crop 80% 0.76 -> 0.90, low contrast 0.84 -> 0.94, "
    "letterbox 0.80 -> 0.91) but broke the calls under a prevalence change (10% pneumonia against 75% in "
    "training: specificity 0.95 -> 0.36) and on another export of the same hospital's images (PneumoniaMNIST: "
    "0.74 -> 0.19). Use it for an export or acquisition change at a similar prevalence, never by default.")
# Suffixes this module puts on a derived run's name; a run derived from a derived run keeps its base name.
_DERIVED_SUFFIXES = (" (recalibrated)", " (adapted without labels)")


@dataclass(frozen=True)
class Recalibration:
    """What recalibration did: the new run, its operating point and temperature, and before/after on the rest."""

    run_id: str
    run_dir: str
    source_run_id: str
    operating_point: dict
    temperature: float
    sample: dict
    before: dict | None
    after: dict | None

    def to_dict(self) -> dict:
        return asdict(self)


# Temperatures searched: a site sample may soften the model (T > 1) a lot, sharpen it (T < 1) at most 4-fold.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.25, 20.0


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(log p / T) on the sample (1 = unchanged).

    A sample the model separates perfectly has no best temperature (the log loss keeps falling as T -> 0): T is
    then left at 1. Sharpening to the search's floor instead pushed the other site images to probabilities of
    exactly 0 and 1, ties that cost AUC (benchmarks/bench_sites.py: 0.988 -> 0.941 after a 40-image re-fit)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0))
    truth = np.asarray(truth, dtype=np.int64)

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(z)), truth] - np.log(np.exp(z).sum(axis=1))).mean())

    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    best = minimize_scalar(nll, bounds=(low, high), method="bounded")
    if float(best.x) <= low + 1e-3:
        return 1.0  # no interior optimum: the sample is separated, the temperature not identifiable from it
    t = math.exp(float(best.x))
    return t if nll(math.log(t)) < nll(0.0) - 1e-6 else 1.0


def scale_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0)) / float(temperature)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def split_sample(ds: Dataset, sample_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sample rows, rest rows): a class-stratified sample of whole patients, the rest for before/after."""
    if not MIN_SAMPLE <= sample_size < len(ds):
        raise InputError(f"calibration sample size must be between {MIN_SAMPLE} and {len(ds) - 1} (the data hold "
                         f"{len(ds)} images), got {sample_size}")
    sample = np.sort(limited_subset(ds, fraction=sample_size / len(ds), seed=seed))
    rest = np.setdiff1d(np.arange(len(ds)), sample)
    return sample, rest


def _sens_spec(task: Task, truth: np.ndarray, calls: np.ndarray, view) -> dict:
    """Sensitivity and specificity (Wilson intervals) of class calls collapsed onto the view."""
    # The operating view decides every class (operating_view), so every case is on one side of it.
    positive = [task.class_index(c) for c in view.positive]
    m = diagnostic_metrics(*counts_from_labels(np.isin(truth, positive), np.isin(calls, positive)))
    return {"n": int(len(truth)), "sensitivity": _interval(m.sensitivity), "specificity": _interval(m.specificity)}


def _indices(task: Task, names) -> np.ndarray:
    return np.array([task.class_index(str(n)) for n in names], dtype=np.int64)


def _interval(iv) -> dict:
    return {"value": float(iv.value), "low": float(iv.low), "high": float(iv.high), "method": str(iv.method)}


def derived_run_name(ws: Workspace, source_id: str, suffix: str) -> tuple[str, str]:
    """(display name, run id) of a run derived from `source_id`: the source's own name without the suffixes of earlier
    derivations plus `suffix`; the id is made from the name's base, never from a run id (no `run-...-run-...`)."""
    from core.store.workspace import new_id

    source = ws.get_run(source_id) or {}
    base = str(source.get("name") or "").strip()
    stripped = True
    while stripped:
        stripped = False
        for old in _DERIVED_SUFFIXES:
            if base.endswith(old):
                base, stripped = base[: -len(old)].rstrip(), True
    config = dict(source.get("config") or {})
    if not base or base == source_id or base.startswith("run-") or base.startswith("ckpt-"):
        # A run without a name of its own is named by its id: the id already says "run" and a time.
        slug_base = f"{config.get('backbone', '')}-{config.get('mode', '')}".strip("-") or "model"
        base = base or source_id
    else:
        slug_base = base
    return f"{base}{suffix}", new_id("run", f"{slug_base}{suffix.replace('without labels', '')}")


def _derived_from(card: dict, source_id: str, weights: Path, temperature: float, shift) -> dict:
    """Card key `derived_from`: the source run and checkpoint this run's logits are a fixed function of
    (logits / temperature + logit_shift); predict() uses the source's stored predictions instead of the images."""
    from core.store.integrity import file_sha256

    k = len(card.get("classes") or (card.get("task") or {}).get("classes") or [])
    shift = [0.0] * k if shift is None else [float(v) for v in shift]
    return {"run_id": source_id, "checkpoint_sha256": file_sha256(weights), "temperature": float(temperature),
            "logit_shift": shift}


def _scaled_model(weights: Path, temperature: float):
    from core.models import get_head, load_checkpoint

    model, card = load_checkpoint(weights)
    model.weights_source = card.get("weights_source", model.weights_source)
    if temperature != 1.0:
        last = [m for m in get_head(model).modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight /= temperature
            last.bias /= temperature
    return model, card




def _source_on_site(ws: Workspace, weights: Path, card: dict, task: Task, data, dataset_id: str | None):
    """(dataset, its registered id, the source model's predictions table on it): the site's images read with the
    task the model was trained on (`source_task` for a binary view of it), predicted once (the workspace's stored
    table when there is one)."""
    from core.infer.predict import _resolve_dataset, predict

    source_task = task_from_dict(card["source_task"], "model card") if card.get("source_task") else task
    ds, registered = _resolve_dataset(ws, data, source_task)
    return ds, registered, predict(weights, ds, ws, dataset_id=dataset_id or registered)


def _site_images(frame, ds: Dataset, dataset_id: str | None) -> dict:
    """Which site images an adaptation used: a count, the dataset's id and fingerprint, never file names."""
    return {"n": int(len(frame)), "dataset_id": dataset_id or None, "dataset_fingerprint": ds.fingerprint,
            "patients": int(frame["patient_id"].nunique()) if "patient_id" in frame else None}

def _write_derived_run(ws: Workspace, *, actor, source_id: str, source_run: dict | None, task: Task, weights: Path,
                       record_key: str, record: dict, suffix: str, name: str | None, how: str, model_of,
                       card_of) -> tuple[str, Path, dict]:
    """The one way a recalibrated or adapted run is written: registered under a clean derived name with the
    source's task, recorded in the audit trail, its checkpoint (`model_of()` -> model, `card_of(run_id)` -> card),
    the source's config and `<record_key>.json` written, marked succeeded; marked failed (and the error raised) if
    writing fails. The source run is never touched. Returns (run id, run folder, card)."""
    from core.models import save_checkpoint
    from core.train.status import write_status

    config = dict((source_run or {}).get("config") or {})  # the registry returns it parsed
    label, new_run_id = derived_run_name(ws, source_id, suffix)
    run_id = ws.create_run(config={**config, "extra": {**config.get("extra", {}), record_key: record}},
                           name=name or label, run_id=new_run_id)
    _keep_task_name(ws, run_id, source_run, task)
    audit_trail.record(ws, actor, "run_derived", run_id, {"source_run": source_id, "how": how})
    run_dir = ws.runs_dir / run_id
    try:
        new_card = card_of(run_id)
        save_checkpoint(model_of(), run_dir / "checkpoint", new_card)
        source_dir = weights.parent.parent
        if (source_dir / "config.json").exists():
            shutil.copy2(source_dir / "config.json", run_dir / "config.json")
        (run_dir / f"{record_key}.json").write_text(json.dumps(record, indent=2))
        write_status(run_dir, ws, run_id, status="succeeded", started=time.time(), finished=time.time(),
                     device="cpu")
    except Exception:
        ws.update_run(run_id, status="failed", error=f"{how}: the new run could not be written")
        raise
    return run_id, run_dir, new_card

def recalibrate(run, data, workspace: Workspace | str | Path | None = None, *, sample_size: int | None = None,
                rule: str = DEFAULT_RULE, target: float | None = None, temperature: bool = True,
                name: str | None = None, seed: int = 0, dataset_id: str | None = None,
                actor: Actor | None = SHELL) -> Recalibration:
    """Recalibrate `run` (id or folder) on labelled `data` (a path, dataset id or Dataset) into a new run.

    With `sample_size`, that many images (whole patients, class-stratified) are drawn from `data` to recalibrate
    on and the rest show before/after; without it, all of `data` is the sample and no before/after is given."""
    from core.infer.predict import resolve_model
    from core.infer.predictions import probabilities

    require(actor, "start_run")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    source_id, weights = resolve_model(ws, run)
    from core.models.checkpoint import CARD_NAME, read_card

    card = read_card(weights.parent / CARD_NAME)
    task = task_from_dict(card.get("task") or {}, source=str(weights.parent / CARD_NAME))
    if task.kind == "multilabel" or operating_view(task) is None:
        raise InputError(f"{source_id}: recalibration needs a single-label task with a binary view that decides "
                         f"every case; task {task.name!r} has none")
    ds, registered, frame = _source_on_site(ws, weights, card, task, data, dataset_id)
    probs = probabilities(frame, task)
    truth = np.array([task.class_index(str(v)) for v in frame["label"]])
    by_id = {str(i): j for j, i in enumerate(frame["image_id"])}
    if sample_size is not None:
        aligned = ds.subset([k for k, i in enumerate(ds.table["image_id"].astype(str)) if i in by_id])
        sample_rows, rest_rows = split_sample(aligned, int(sample_size), seed)
        ids = aligned.table["image_id"].astype(str).to_numpy()
        sample = np.array([by_id[i] for i in ids[sample_rows]])
        rest = np.array([by_id[i] for i in ids[rest_rows]])
    else:
        if len(frame) < MIN_SAMPLE:
            raise InputError(f"calibration sample: {len(frame)} labelled images; at least {MIN_SAMPLE} are needed")
        sample, rest = np.arange(len(frame)), np.arange(0)
    t = fit_temperature(probs[sample], truth[sample]) if temperature else 1.0
    scaled = scale_probabilities(probs, t)
    source_text = f"a site sample of {len(sample)} labelled images ({Path(str(ds.source)).name or 'uploaded'})"
    point = choose_operating_point(task, truth[sample], scaled[sample], rule, target, source=source_text)
    if point is None:
        raise InputError("calibration sample: it must hold cases of both sides of "
                         f"{operating_view(task).name!r} to set an operating point")
    before = after = None
    if len(rest):
        old = ModelOperatingPoint.from_dict(card.get("operating_point"))
        old_calls = _indices(task, model_calls(probs[rest], task, old))
        new_calls = _indices(task, model_calls(scaled[rest], task, point))
        before = _sens_spec(task, truth[rest], old_calls, point.binary_view)
        after = _sens_spec(task, truth[rest], new_calls, point.binary_view)

    source_run = ws.get_run(source_id)
    record = {"source_run": source_id, "source_checkpoint": str(weights), "data": str(ds.source),
              "dataset_fingerprint": ds.fingerprint, "sample_size": int(len(sample)), "seed": seed, "rule": rule,
              "target": target, "temperature": t, "operating_point": point.to_dict(), "before": before,
              "after": after, "created": time.time()}
    run_id, run_dir, _ = _write_derived_run(
        ws, actor=actor, source_id=source_id, source_run=source_run, task=task, weights=weights,
        record_key="recalibration", record=record, suffix=" (recalibrated)", name=name,
        how=f"recalibrated on {len(sample)} labelled site images", model_of=lambda: _scaled_model(weights, t)[0],
        card_of=lambda run_id: {
            **card, "operating_point": point.to_dict(), "recalibration": record, "run_id": run_id,
            "derived_from": _derived_from(card, source_id, weights, t, None), **_carried_feature_stats(weights, card),
            # The referral band's error guarantee holds where it was calibrated: here, on the site sample.
            **referral_card(task, truth[sample], scaled[sample], point, source=source_text)})
    return Recalibration(run_id, str(run_dir), source_id, point.to_dict(), t,
                         {"n": int(len(sample)), "n_rest": int(len(rest))}, before, after)


def _no_band_without_labels(card: dict) -> dict:
    """A label-free adaptation's referral band: none (no labels show one keeps its error rate at the site), with
    why; a source that had no band passes on its own reason."""
    return {"referral_band": None, "referral_calibration": {"reason": NO_BAND_WITHOUT_LABELS}
            if card.get("referral_band") else card.get("referral_calibration")}


def _keep_task_name(ws: Workspace, run_id: str, source_run: dict | None, task: Task) -> None:
    """The registry's task column holds a task *name* (what the trainer writes): a derived run's config carries the
    task as a dict, which create_run would store as its text; keep the source's name instead."""
    ws.update_run(run_id, task=str((source_run or {}).get("task") or task.name))


# -- label-free adaptation to a site (prior shift) ----------------------------------------------------------------

@dataclass(frozen=True)
class Adaptation:
    """What label-free adaptation did: the new run, the estimated site prior, and the threshold before/after."""

    run_id: str
    run_dir: str
    source_run_id: str
    method: str
    estimate: dict  # PriorEstimate.to_dict(): prior, intervals, training prior, iterations, n
    training_prior: dict
    threshold_before: float | None
    threshold_after: float | None
    operating_point: dict | None
    images: dict

    def to_dict(self) -> dict:
        return asdict(self)


def source_training_prior(card: dict, task: Task, config: dict | None, run_label: str) -> tuple[np.ndarray, str]:
    """(the prior the run's probabilities are calibrated to, in task order; where it comes from).

    The card's `training_prior` (written at training since it exists, moved by each adaptation); for older cards the
    run config's class balancing (balanced: equal shares) or its training split's class counts; else InputError."""
    stored = card.get("training_prior")
    if stored:
        classes = list(stored.get("classes") or task.classes)
        if classes != list(task.classes):
            raise InputError(f"{run_label}: the model card's training prior is for classes {classes}, not the "
                             f"model's {list(task.classes)}")
        prior = np.asarray(stored.get("prior"), dtype=float)
        if prior.size == len(classes) and (prior <= 0).any():
            absent = [c for c, v in zip(classes, prior) if v <= 0]
            raise InputError(f"{run_label}: class(es) {absent} had no training images, so the model's probabilities "
                             "carry no prior for them; label-free adaptation cannot re-weight them")
        return check_prior(prior, len(classes), f"{run_label}: model card training prior"), str(
            stored.get("basis") or "the model card's training prior")
    config = config or {}
    if str(config.get("balance") or "none") != "none":
        k = len(task.classes)
        return np.full(k, 1.0 / k), (f"balanced (the run's config balances classes: {config.get('balance')!r}; its "
                                     "card predates training_prior)")
    from core.train.run_folder import training_class_counts

    counts, where = training_class_counts(config) if config.get("data") else (None, "the run has no config")
    if counts is None:
        raise InputError(f"{run_label}: the model card does not say which class prior its probabilities are "
                         f"calibrated to (it predates training_prior) and {where}; retrain the model, or use "
                         "labelled recalibration instead")
    values = np.array([float(counts.get(c, 0)) for c in task.classes])
    if (values <= 0).any():
        absent = [c for c, v in zip(task.classes, values) if v <= 0]
        raise InputError(f"{run_label}: class(es) {absent} had no training images; label-free adaptation cannot "
                         "re-weight them")
    return values / values.sum(), f"{where} (class counts; the card predates training_prior)"


def _shifted_model(weights: Path, shift: np.ndarray):
    """The checkpoint's model with log(q / pi) added to its last Linear layer's bias: softmax(z + log q/pi) is
    Bayes' posterior at prior q (the softmax's normaliser absorbs the rest)."""
    from core.models import get_head, load_checkpoint

    model, card = load_checkpoint(weights)
    model.weights_source = card.get("weights_source", model.weights_source)
    last = [m for m in get_head(model).modules() if isinstance(m, torch.nn.Linear)]
    if not last or last[-1].bias is None or last[-1].out_features != len(shift):
        raise InputError(f"{weights}: the model's head has no last linear layer with a bias per class, so its "
                         "probabilities cannot be moved to another prior")
    with torch.no_grad():
        last[-1].bias += torch.as_tensor(shift, dtype=last[-1].bias.dtype)
    return model, card


def adapt_unlabelled(run, data, workspace: Workspace | str | Path | None = None, *, name: str | None = None,
                     dataset_id: str | None = None, method: str = "em", actor: Actor | None = SHELL,
                     n_resamples: int = 200, seed: int = 0, max_iter: int = 1000) -> Adaptation:
    """Adapt `run` (id or folder) to a site's *unlabelled* images `data` (path, dataset id or Dataset): a NEW run.

    method "em" (the default) is described here; "standardise" is feature standardisation (_adapt_standardise, an
    explicit opt-in: see STANDARDISE_WARNING).
    The source model's probabilities on the site (the workspace's stored predictions when present) give the site's
    class prior by EM (core.metrics.prior_shift.em_prevalence, bootstrap interval over patients); the new run's
    head adds log(site prior / training prior) to its last bias, so every probability it gives (predict, maps,
    report) is the prior-adjusted one. The operating point keeps its rule: Youden's J and a sensitivity target are
    class-conditional, unchanged by prior shift, so its threshold moves with the adjustment (adjust_threshold) and
    the calls on the view stay those of the source (exactly for a binary view); what changes is the probabilities
    (calibration at the site, predictive values, the most probable class). Labels in `data` are never read."""
    require(actor, "start_run")
    if method not in ADAPT_METHODS:
        raise InputError(f"label-free adaptation method must be one of {', '.join(ADAPT_METHODS)}, got {method!r}")
    if method == "standardise":
        return _adapt_standardise(run, data, workspace, name=name, dataset_id=dataset_id, actor=actor)
    from core.infer.predict import resolve_model
    from core.infer.predictions import probabilities
    from core.models.checkpoint import CARD_NAME, read_card

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    source_id, weights = resolve_model(ws, run)
    card = read_card(weights.parent / CARD_NAME)
    task = task_from_dict(card.get("task") or {}, source=str(weights.parent / CARD_NAME))
    if task.kind == "multilabel":
        raise InputError(f"{source_id}: label-free adaptation re-estimates the prior of single-label classes; task "
                         f"{task.name!r} is multi-label (each label has its own prevalence), which it does not cover")
    source_run = ws.get_run(source_id)
    config = dict((source_run or {}).get("config") or {})
    train_prior, prior_basis = source_training_prior(card, task, config, source_id)
    ds, registered, frame = _source_on_site(ws, weights, card, task, data, dataset_id)
    if len(frame) < MIN_UNLABELLED:
        raise InputError(f"label-free adaptation: {len(frame)} site images; at least {MIN_UNLABELLED} are needed to "
                         "estimate the site's class prevalence")
    probs = probabilities(frame, task)
    patients = frame["patient_id"].to_numpy() if "patient_id" in frame else None
    estimate = em_prevalence(probs, train_prior, patient_ids=patients, n_resamples=n_resamples, seed=seed,
                             classes=task.classes, max_iter=max_iter)
    if not estimate.converged:
        raise InputError(f"label-free adaptation: the EM estimate of the site's prevalence did not converge in "
                         f"{estimate.iterations} iterations (the model's probabilities fit no mixture of its "
                         "classes well); no run was written")
    site_prior = np.asarray(estimate.prior)
    old = ModelOperatingPoint.from_dict(card.get("operating_point"))
    point = None
    if old is not None:
        # Each side of the view moves as a whole: the view's ranking (its AUC) is the source's and the calls too.
        positive = [task.class_index(c) for c in old.positive]
        site_prior = view_consistent_prior(train_prior, site_prior, positive)
    shift = prior_log_ratio(train_prior, site_prior)
    if old is not None:
        moved = adjust_threshold(old.threshold, positive, train_prior, site_prior)
        point = ModelOperatingPoint(old.view, old.positive, old.negative, moved, old.rule, old.target,
                                    old.sensitivity, old.specificity, old.n_positive, old.n_negative,
                                    f"{old.source}; moved to the site's estimated prevalence (same calls, "
                                    "prior-adjusted scale)")
    who = getattr(actor, "user_id", None) or "unknown"
    images = _site_images(frame, ds, dataset_id or registered)
    prior_record = {"classes": list(task.classes), "prior": [float(v) for v in train_prior], "basis": prior_basis}
    record = {"method": estimate.method, "source_run": source_id, "source_checkpoint": str(weights),
              "estimated_prior": estimate.to_dict(), "training_prior": prior_record,
              "applied_prior": {"classes": list(task.classes), "prior": [float(v) for v in site_prior],
                                "basis": "the estimate's total on each side of the operating view, shared among "
                                         "that side's classes in their training proportions" if old else
                                         "the estimate itself (no operating view)"},
              "logit_shift": [float(v) for v in shift],
              "threshold_before": old.threshold if old else None, "threshold_after": point.threshold if point else None,
              "threshold_rule": "the operating point's rule is kept: its cut moves with the prior adjustment, so the "
                                "calls on its view are the source's" if point else None,
              "images": images, "created": time.time(), "who": who}

    run_id, run_dir, new_card = _write_derived_run(
        ws, actor=actor, source_id=source_id, source_run=source_run, task=task, weights=weights,
        record_key="adaptation", record=record, suffix=" (adapted without labels)", name=name,
        how=f"adapted without labels to {int(len(probs))} site images",
        model_of=lambda: _shifted_model(weights, shift)[0],
        card_of=lambda run_id: {
            **card, "operating_point": point.to_dict() if point else None, "adaptation": record, "run_id": run_id,
            "derived_from": _derived_from(card, source_id, weights, 1.0, shift), **_carried_feature_stats(weights, card),
            "training_prior": {"classes": list(task.classes), "prior": [float(v) for v in site_prior],
                               "counts": None, "basis": f"adapted: the site prior estimated by {estimate.method} "
                                                        f"on {len(frame)} unlabelled images"},
            **_no_band_without_labels(card)})
    return Adaptation(run_id, str(run_dir), source_id, estimate.method, estimate.to_dict(), prior_record,
                      record["threshold_before"], record["threshold_after"], new_card["operating_point"], images)


# -- label-free adaptation to a site (feature standardisation, an explicit opt-in) --------------------------------

NO_FEATURE_STATS = ("trained before feature statistics were stored (its model card has no feature_stats); retrain "
                    "it, or use EM adaptation (without --standardise) or labelled recalibration")


def _carried_feature_stats(weights: Path, card: dict) -> dict:
    """{feature_stats: the source's training feature statistics} for a derived run's card, so save_checkpoint writes
    them beside its weights too; {} when the source has none or they cannot be read (nothing else depends on it)."""
    from core.models.feature_stats import CARD_KEY, read_feature_stats

    try:
        stats = read_feature_stats(weights.parent, card)
    except InputError:
        stats = None
    return {CARD_KEY: stats} if stats is not None else {}


def site_features(model, card: dict, ds: Dataset, rows: np.ndarray, fingerprint: str,
                  ws: Workspace) -> tuple[np.ndarray, dict]:
    """(pooled backbone features of ds's `rows`, what was extracted) through the product's feature cache
    (core.train.features), with the preprocessing and precision predict() runs `model` with. The cache key names
    the backbone by its tensors' digest, so runs derived from one training run share it: a second adaptation to the
    same images reads them back."""
    from core.infer.predict import model_precision
    from core.models import build_transform
    from core.models.feature_stats import PooledFeatures, backbone_digest
    from core.models.precision import inference_precision
    from core.train.features import FeatureCache, cached_features, feature_cache_key
    from core.train.recipe import resolve_device

    device = resolve_device("auto")
    amp, channels_last = inference_precision(device, model_precision(card))
    precision = str(amp or torch.float32).replace("torch.", "")
    digest = backbone_digest(model)
    source = f"backbone sha256:{digest[:16]}"
    preprocessing = dict(card["preprocessing"])
    key = feature_cache_key(fingerprint, str(card["backbone"]), source, preprocessing, digest, precision)
    info = {"fingerprint": fingerprint, "backbone": card["backbone"], "precision": precision,
            "weights_source": source, "preprocessing": preprocessing}
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        features, stats = cached_features(FeatureCache(ws.cache_dir / "features"), key, info, PooledFeatures(model),
                                          ds, np.asarray(rows, dtype=np.int64),
                                          build_transform(preprocessing, train=False), device, batch_size=64,
                                          amp_dtype=amp, channels_last=channels_last)
    finally:
        model.cpu().to(memory_format=torch.contiguous_format)
    return features.numpy().astype(np.float64), {"precision": precision, "cache_key": key,
                                                 "cached": int(stats["cached"]), "computed": int(stats["computed"])}


def _head_probabilities(model, features: np.ndarray, task: Task) -> np.ndarray:
    """The model's head (with whatever input map it has) on pooled features, as probabilities."""
    from core.models import get_head

    head = get_head(model).eval()
    with torch.no_grad():
        logits = head(torch.as_tensor(features, dtype=torch.float32)).double()
    return (torch.sigmoid(logits) if task.kind == "multilabel" else torch.softmax(logits, dim=1)).numpy()


def _positive_share(probs: np.ndarray, task: Task, point: ModelOperatingPoint | None) -> float | None:
    if point is None:
        return None
    positive = [task.class_index(c) for c in point.positive]
    return float(np.isin(_indices(task, model_calls(probs, task, point)), positive).mean())


def _adapt_standardise(run, data, workspace, *, name: str | None, dataset_id: str | None,
                       actor: Actor | None) -> Adaptation:
    """Feature standardisation: the site's pooled features (source backbone, feature cache) get each feature's
    training mean and spread, x' = (x - site mean) / site sd * training sd + training mean (a feature constant at
    the site gets the training mean), by a fixed InputAffine in front of the source's head in a NEW run. The
    operating point is the source's, threshold unchanged: the point of standardising is that the training scale
    holds again. Assumes the site's class mix is training's (STANDARDISE_WARNING). Labels are never read."""
    from core.infer.predict import _align_to_model, resolve_model
    from core.models import load_checkpoint
    from core.models.checkpoint import CARD_NAME, read_card
    from core.models.factory import set_input_affine
    from core.models.feature_stats import CARD_KEY, FeatureStats, InputAffine, read_feature_stats
    from core.models.registry import feature_dim_of

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    source_id, weights = resolve_model(ws, run)
    card = read_card(weights.parent / CARD_NAME)
    task = task_from_dict(card.get("task") or {}, source=str(weights.parent / CARD_NAME))
    training = read_feature_stats(weights.parent, card)
    if training is None:
        raise InputError(f"{source_id}: feature standardisation needs the training features' statistics, and this "
                         f"model was {NO_FEATURE_STATS}")
    source_run = ws.get_run(source_id)
    # The source's own table on the site: which images decode (the ones predict keeps), and its calls before.
    ds, registered, frame = _source_on_site(ws, weights, card, task, data, dataset_id)
    if len(frame) < MIN_UNLABELLED:
        raise InputError(f"feature standardisation: {len(frame)} site images; at least {MIN_UNLABELLED} are needed "
                         "to estimate each feature's mean and spread at the site")
    model, _ = load_checkpoint(weights)
    model.weights_source = card.get("weights_source", model.weights_source)
    if feature_dim_of(model) != training.dim:
        raise InputError(f"{weights.parent}: the training feature statistics hold {training.dim} features, the "
                         f"backbone gives {feature_dim_of(model)}; the statistics do not belong to this model")
    aligned = _align_to_model(ds, card, task)
    where = {str(i): k for k, i in enumerate(aligned.table["image_id"].astype(str))}
    rows = np.array([where[str(i)] for i in frame["image_id"]], dtype=np.int64)
    x, extraction = site_features(model, card, aligned, rows, ds.fingerprint, ws)
    site = FeatureStats.of(x, f"pooled backbone features of {len(rows)} unlabelled site images")
    affine, constant = InputAffine.standardising(site, training)
    point = ModelOperatingPoint.from_dict(card.get("operating_point"))
    before = _positive_share(_head_probabilities(model, x, task), task, point)
    set_input_affine(model, affine)
    after = _positive_share(_head_probabilities(model, x, task), task, point)

    who = getattr(actor, "user_id", None) or "unknown"
    images = _site_images(frame, ds, dataset_id or registered)
    record = {"method": STANDARDISE_METHOD, "source_run": source_id, "source_checkpoint": str(weights),
              "images": images, "created": time.time(), "who": who, "warning": STANDARDISE_WARNING,
              "features": {"dim": training.dim, "constant_at_site": constant,
                           "training": {"n": training.n, "basis": training.basis}, "site": {"n": site.n},
                           "map": "x' = (x - site mean) / site sd * training sd + training mean, per feature; a "
                                  "feature constant at the site gets the training mean", **extraction},
              "threshold_before": point.threshold if point else None,
              "threshold_after": point.threshold if point else None,
              "threshold_rule": "the source's operating point is kept unchanged: standardised features are on the "
                                "training scale again" if point else None,
              "called_positive": {"view": point.view, "before": before, "after": after} if point else None}
    run_id, run_dir, _ = _write_derived_run(
        ws, actor=actor, source_id=source_id, source_run=source_run, task=task, weights=weights,
        record_key="adaptation", record=record, suffix=" (adapted without labels)", name=name,
        how=f"feature standardisation without labels to {int(len(frame))} site images", model_of=lambda: model,
        card_of=lambda run_id: {
            **card, "adaptation": record, "run_id": run_id,
            # input_affine: its outputs depend on the features, so predict() never derives them from the source's
            # stored table.
            "derived_from": {**_derived_from(card, source_id, weights, 1.0, None), "input_affine": True},
            CARD_KEY: training,  # the training statistics: what a later standardisation maps onto again
            **_no_band_without_labels(card)})
    prior = card.get("training_prior") or {}
    return Adaptation(run_id, str(run_dir), source_id, STANDARDISE_METHOD, {}, dict(prior), record["threshold_before"],
                      record["threshold_after"], card.get("operating_point"), images)
