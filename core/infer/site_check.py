"""Is this test set shifted for this run? And which adaptation produced a run's calls, in one sentence.

`check_site` is the one owner of the first question. It puts together, never computing an audit itself:

- the dataset audit's shift verdict (core.audit: image properties and, when the full audit ran, a domain classifier
  on backbone features), read from the workspace cache for the test set against the run's training dataset;
- the prevalence of the run's operating view's positive side on the test set: the share the model calls positive
  and EM's label-free estimate with its interval (core.metrics.site_prevalence), against the training prevalence
  (the card's `training_prior`, else the counts its operating point was chosen on). Flagged by
  core.metrics.site_prevalence.prevalence_far: the training prevalence outside EM's interval and an absolute gap
  of at least 0.10.

Either flag marks the test set as shifted for the run. `adaptation_text` is the one sentence that says a run's
calls come from an adapted (label-free) or recalibrated (labelled) run; the pages and the report print it.
`adapt_to_test_set` is what the pages' "Adapt without labels now" does: a new adapted run and its predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.tasks import Task
from core.errors import InputError
from core.metrics.intervals import Interval
from core.metrics.model_operating_point import ModelOperatingPoint, operating_view
from core.metrics.site_prevalence import SitePrevalence, side_prevalence
from core.store import Workspace
from core.store.access import SHELL, Actor

STANDARDISED = "feature standardisation"  # core.infer.recalibrate.STANDARDISE_METHOD (tests check they agree)
# The label-free remedies the pages offer, label -> adapt_unlabelled method; the first is the default.
ADAPT_CHOICES = {"Prevalence (EM, keeps the calls)": "em",
                 "Standardise features (export/acquisition change, similar prevalence)": "standardise"}


@dataclass(frozen=True)
class SiteCheck:
    """Whether a test set looks shifted for a run, and why, in parts a page or report can show."""

    run_id: str
    test_set_id: str
    view: str | None
    audit_status: str  # "flagged", "not flagged" or "not run" (no cached audit against the training data)
    audit_reasons: tuple[str, ...]
    domain_auc: float | None
    prevalence: SitePrevalence | None
    training_source: str | None  # where the training prevalence comes from

    @property
    def audit_flagged(self) -> bool:
        return self.audit_status == "flagged"

    @property
    def prevalence_flagged(self) -> bool:
        return bool(self.prevalence is not None and self.prevalence.far)

    @property
    def flagged(self) -> bool:
        return self.audit_flagged or self.prevalence_flagged

    def reasons(self) -> list[str]:
        """What differs, in plain words (empty when nothing is flagged)."""
        out = []
        if self.prevalence_flagged:
            p = self.prevalence
            out.append(f"the share of {self.view!r} cases is estimated at {_interval_words(p.estimated)} without "
                       f"labels (the model calls {p.called:.2f} of them positive), against {p.training:.2f} in "
                       "training")
        if self.audit_flagged:
            out.extend(self.audit_reasons or ("the dataset audit flags a shift from the training images",))
        return out

    def summary(self) -> str:
        """The flagged reasons as one parenthesis-ready phrase."""
        return "; ".join(self.reasons())


def _interval_words(iv: Interval) -> str:
    if np.isfinite(iv.low) and np.isfinite(iv.high) and iv.high > iv.low:
        return f"{iv.value:.2f} ({iv.low:.2f}-{iv.high:.2f})"
    return f"{iv.value:.2f}"


# -- training prevalence ---------------------------------------------------------------------------------------
def _by_class(record: dict, field: str, task: Task) -> np.ndarray | None:
    """One of a `training_prior` record's per-class lists ({"classes", "prior", "counts", ...}, as
    core.metrics.prior_shift.training_prior_record writes it) in task order, as shares; None when unusable."""
    try:
        names = [str(c) for c in record.get("classes") or task.classes]
        values = dict(zip(names, (float(v) for v in record[field])))
        out = np.asarray([values[c] for c in task.classes], dtype=float)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not np.isfinite(out).all() or (out < 0).any() or out.sum() <= 0:
        return None
    return out / out.sum()


def _side(shares: np.ndarray | None, task: Task, positive) -> float | None:
    if shares is None:
        return None
    share = float(sum(shares[task.class_index(c)] for c in positive))
    return share if 0.0 < share < 1.0 else None


def training_prevalence(card: dict | None, task: Task) -> tuple[float, float, str] | None:
    """(training images' share of the operating view's positive side, that side's share in the prior the
    probabilities are calibrated to, where they come from), or None when unknown. From the card's
    `training_prior` (its counts and prior; for a run adapted without labels, the site prior it was adapted to),
    else the images the operating point was chosen on (calibration assumed at the same share)."""
    view = operating_view(task)
    if view is None or not card:
        return None
    record = card.get("training_prior")
    if isinstance(record, dict):
        counts = _side(_by_class(record, "counts", task), task, view.positive)
        calibrated = _side(_by_class(record, "prior", task), task, view.positive)
        if counts is not None:
            return counts, calibrated if calibrated is not None else counts, "the training images' class counts"
        if calibrated is not None and card.get("adaptation"):
            # An adapted run expects the prevalence it was adapted to (its probabilities are calibrated there).
            return calibrated, calibrated, "the prevalence this run was adapted to"
    point = ModelOperatingPoint.from_dict(card.get("operating_point"))
    if point is not None and point.n_positive > 0 and point.n_negative > 0:
        share = point.n_positive / (point.n_positive + point.n_negative)
        return share, share, f"the {point.n_positive + point.n_negative} images its operating point was chosen on"
    return None


def prevalence_check(probabilities, calls, task: Task, card: dict | None, patient_ids=None,
                     n_resamples: int = 200, seed: int = 0) -> tuple[SitePrevalence, str] | None:
    """The positive side's share on the site (the model's class-index `calls` and EM on `probabilities`) against
    training's, with where training's comes from; None for a task without a deciding view or a card without a
    training prevalence."""
    view = operating_view(task)
    known = training_prevalence(card, task)
    if view is None or known is None:
        return None
    positive = [task.class_index(c) for c in view.positive]
    called = np.isin(np.asarray(calls, dtype=np.int64), positive)
    result = side_prevalence(probabilities, called, positive, known[0], calibrated_at=known[1],
                             patient_ids=patient_ids, n_resamples=n_resamples, seed=seed)
    return result, known[2]


# -- the audit's verdict (cached only) ------------------------------------------------------------------------
def audit_shift(ws: Workspace, test_set_id: str, training_dataset_id: str | None) -> dict | None:
    """The cached dataset audit's shift section for the test set against the training dataset, or None when no
    audit of that pair is cached (nothing is started here)."""
    if not training_dataset_id or ws.get_dataset(training_dataset_id) is None:
        return None
    from core.audit.jobs import audit_state

    try:
        state = audit_state(ws, test_set_id, training_dataset_id)
    except (InputError, OSError):
        return None
    return (state.get("report") or {}).get("shift") if state.get("status") == "done" else None


def read_card(ws: Workspace, run_id: str) -> dict | None:
    """A run's model card, or None when it has none (InputError when it is there but damaged)."""
    from core.train.run_folder import run_model_card

    return run_model_card(ws.get_run(run_id))


def combine(run_id: str, test_set_id: str, task: Task, shift: dict | None,
            prevalence: tuple[SitePrevalence, str] | None) -> SiteCheck:
    """The SiteCheck from the audit's shift section and the prevalence check (either may be None)."""
    view = operating_view(task)
    domain = (shift or {}).get("domain_classifier") or {}
    status = "not run" if shift is None else ("flagged" if shift.get("flagged") else "not flagged")
    return SiteCheck(run_id, test_set_id, view.name if view else None, status,
                     tuple(str(r) for r in (shift or {}).get("reasons") or ()),
                     float(domain["auc"]) if domain.get("auc") is not None else None,
                     prevalence[0] if prevalence else None, prevalence[1] if prevalence else None)


def check_site(ws: Workspace, run_id: str, test_set_id: str) -> SiteCheck:
    """Is `test_set_id` shifted for `run_id`? From the run's predictions on it, its card and the cached audit.
    InputError when the run has no predictions on the test set."""
    from core.infer.predictions import evaluation_arrays, read_predictions, task_of

    row = ws.find_predictions(run_id, test_set_id)
    if row is None:
        raise InputError(f"no predictions of run {run_id!r} on test set {test_set_id!r}: run the model on it first")
    frame, meta = read_predictions(row["path"])
    run = ws.get_run(run_id) or {}
    task = task_of(meta, run.get("task"))
    card = read_card(ws, run_id)
    prevalence = None
    if task.kind != "multilabel":
        arrays = evaluation_arrays(frame, task)
        prevalence = prevalence_check(arrays.probabilities, arrays.model_calls, task, card, arrays.patient_codes)
    shift = audit_shift(ws, test_set_id, run.get("dataset_id") or (card or {}).get("training_dataset_id"))
    return combine(run_id, test_set_id, task, shift, prevalence)


# -- which adaptation produced the calls ---------------------------------------------------------------------
def _num(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def adaptation_text(card: dict | None, run_name: str | None = None) -> str | None:
    """The sentence that says a run's calls come from an adapted (no labels) or recalibrated (labels) run, or None
    for a run that is neither. The one wording the Performance and Test sets pages and the report use. A run derived
    twice carries both records: the later one made its calls."""
    if not card:
        return None
    who = f"run {run_name or card.get('run_id') or '(unnamed)'}"
    records = [(kind, card.get(kind)) for kind in ("adaptation", "recalibration") if isinstance(card.get(kind), dict)]
    if not records:
        return None
    kind, record = max(records, key=lambda kr: _num(kr[1].get("created")) or 0.0)
    if kind == "adaptation" and record.get("method") == STANDARDISED:
        return _standardised_sentence(who, record)
    return _adapted_sentence(who, record, card) if kind == "adaptation" else _recalibrated_sentence(who, record)


def _where(a: dict) -> str:
    images = a.get("images") or {}
    where = f"test set {images['dataset_id']}" if images.get("dataset_id") else "a site's images"
    return where + (f" ({int(images['n'])} images)" if images.get("n") is not None else "")


def _standardised_sentence(who: str, a: dict) -> str:
    """'Calls from run X, adapted without labels to test set Y (N images) by feature standardisation: each backbone
    feature mapped from the site's mean and spread to the training images'; threshold 0.544 kept (from run Z, which
    is unchanged). It assumes the site's class mix is like training's.'"""
    text = (f"Calls from {who}, adapted without labels to {_where(a)} by feature standardisation: each backbone "
            "feature mapped from the site's mean and spread to the training images'")
    threshold = _num(a.get("threshold_after"))
    if threshold is not None:
        text += f"; threshold {threshold:.3f} kept"
    source = a.get("source_run")
    return (text + (f" (from run {source}, which is unchanged)" if source else "")
            + ". It assumes the site's class mix is like training's.")


def _recalibrated_sentence(who: str, recal: dict) -> str:
    threshold = _num((recal.get("operating_point") or {}).get("threshold"))
    temperature = _num(recal.get("temperature"))
    data = Path(str(recal.get("data") or "")).name or "the site"
    parts = [f"threshold {threshold:.3f}" if threshold is not None else "",
             f"temperature {temperature:.2f}" if temperature is not None and abs(temperature - 1.0) > 1e-9 else ""]
    tail = ", ".join(p for p in parts if p)
    source = recal.get("source_run")
    return (f"Calls from {who}, recalibrated with labels on {recal.get('sample_size', '?')} images of {data}"
            + (f": {tail}" if tail else "") + (f" (from run {source}, which is unchanged)" if source else "") + ".")


def _adapted_sentence(who: str, a: dict, card: dict) -> str:
    """'Calls from run X, adapted without labels to test set Y (N images): estimated PNEUMONIA prevalence 0.62
    (0.55-0.68) vs 0.40 in training; threshold 0.544 -> 0.310 (from run Z, which is unchanged).'"""
    estimate = a.get("estimated_prior") or {}
    classes = [str(c) for c in estimate.get("classes") or []]
    prior = dict(zip(classes, estimate.get("prior") or []))
    trained = a.get("training_prior") or {}
    before = dict(zip([str(c) for c in trained.get("classes") or classes], trained.get("prior") or []))
    point = card.get("operating_point") or {}
    shown = [c for c in point.get("positive") or [] if c in prior] or classes
    said = []
    for c in shown:
        iv = (estimate.get("intervals") or {}).get(c) or {}
        low, high = _num(iv.get("low")), _num(iv.get("high"))
        ci = f" ({low:.2f}-{high:.2f})" if low is not None and high is not None and high > low else ""
        old = _num(before.get(c))
        said.append(f"{c} {_num(prior[c]):.2f}{ci}" + (f" vs {old:.2f} in training" if old is not None else ""))
    text = f"Calls from {who}, adapted without labels to {_where(a)}"
    if said:
        text += ": estimated prevalence " + ", ".join(said)
    t0, t1 = _num(a.get("threshold_before")), _num(a.get("threshold_after"))
    if t0 is not None and t1 is not None:
        text += f"; threshold {t0:.3f} -> {t1:.3f}"
    source = a.get("source_run")
    return text + (f" (from run {source}, which is unchanged)" if source else "") + "."


# -- the label-free remedy, as the pages offer it ---------------------------------------------------------------
def adapt_to_test_set(ws: Workspace, run_id: str, test_set_id: str, actor: Actor | None = SHELL,
                      method: str = "em"):
    """Adapt `run_id` without labels to `test_set_id` (core.infer.recalibrate.adapt_unlabelled with `method`, one
    of ADAPT_CHOICES' values: a NEW run, the source untouched) and compute the new run's predictions on the test
    set; returns the Adaptation. Needs the right to start a run (adapt_unlabelled checks it, before anything is
    read or written)."""
    from core.infer.predict import predict
    from core.infer.recalibrate import adapt_unlabelled

    adaptation = adapt_unlabelled(run_id, test_set_id, ws, dataset_id=test_set_id, actor=actor, method=method)
    predict(adaptation.run_id, test_set_id, workspace=ws, dataset_id=test_set_id, num_workers=0)
    return adaptation
