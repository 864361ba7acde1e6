"""Collect a stakeholder report's content into one JSON-safe dict; every number comes from core.metrics/core.readers."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

import core
from core.data.tasks import Task, get_task
from core.errors import InputError
from core.infer.predictions import (has_referrals, patient_ids, predicted_classes, predicted_indices, probabilities,
                                    imported_provenance, read_predictions,
                                    referred_mask, task_of)
from core.report.subgroups import registered_subgroups
from core.metrics import BinaryScores, binary_view_data, class_indices, to_jsonable
from core.metrics.headline import HEADLINE_RESAMPLES, headline_statistics
from core.metrics.intervals import check_confidence
from core.metrics.likelihood_ratios import LR_METHODS
from core.metrics.penalties import Penalty
from core.metrics.threshold_in_use import threshold_in_use
from core.report.active_penalty import resolve_penalty
from core.report.caveats import report_caveats, stored_audit
from core.report.referral_cost import resolve_referral_cost
from core.report.referrals import referrals_section
from core.report.decision import decision_section
from core.report.evaluate import evaluate_predictions
from core.report.failures import failure_cases
from core.report.methods import methods_section
from core.report.model_card import describe_test_set, model_card, trained_elsewhere
from core.store import Workspace

REPORT_FORMAT_VERSION = 1
PRODUCT_NAME = "OpenKermany"
DEFAULT_TITLE = "Model evaluation report"
# The model's ROC under the readers is stored thinned: a browser draws 1,000 points as well as 100,000.
MAX_READER_ROC_POINTS = 1000


def read_run_predictions(ws: Workspace, run_id: str, test_set_id: str) -> tuple[pd.DataFrame, dict, Task]:
    """The predictions table of a run on a test set, its metadata and its task (InputError when missing)."""
    row = ws.find_predictions(run_id, test_set_id)
    if row is None:
        raise InputError(f"no predictions of run {run_id!r} on test set {test_set_id!r}: run the model on the "
                         "test set first")
    frame, meta = read_predictions(row["path"])
    return frame, meta, task_of(meta, (ws.get_run(run_id) or {}).get("task"),
                                (ws.get_dataset(test_set_id) or {}).get("task"))


def _records(frame: pd.DataFrame) -> list[dict]:
    return to_jsonable(frame.astype(object).where(frame.notna(), None).to_dict("records"))


def _thinned_roc(roc: dict) -> dict:
    from core.plots.roc import display_indices  # pure numpy: which points to keep for drawing

    keep = display_indices(roc["fpr"], roc["tpr"], MAX_READER_ROC_POINTS)
    return {"view": roc["view"], "fpr": np.asarray(roc["fpr"])[keep], "tpr": np.asarray(roc["tpr"])[keep],
            "auc": roc["auc"], "n_positive": roc["n_positive"], "n_negative": roc["n_negative"],
            "points_stored": int(keep.size), "points_full": int(np.asarray(roc["fpr"]).size)}


def readers_section(readings: pd.DataFrame | None, frame: pd.DataFrame, task: Task, penalty: np.ndarray,
                    threshold: float, confidence: float = 0.95, lr_ci: str = "log") -> dict:
    """Readers vs the model in the task's default binary view, from core.readers (nothing recomputed here).
    Says why when there is nothing to compare."""
    from core.readers import (DEFAULT_PROFILES, READINGS_COLUMNS, compare_readers_to_model, is_simulated, lr_table,
                              model_metrics, model_roc, roc_points, simulated_profile, weighted_error_table)

    if readings is None or len(readings) == 0:
        return {"included": False, "reason": "no expert readings are stored for this test set"}
    if task.kind == "multilabel" or task.default_view() is None:
        return {"included": False, "reason": "reader comparisons need one label per image and a binary view"}
    view = task.default_view()
    table = readings[[c for c in READINGS_COLUMNS if c in readings.columns]].reset_index(drop=True)
    try:
        compare = compare_readers_to_model(table, frame, task, view, threshold=threshold, penalty=penalty,
                                           lr_ci=lr_ci, confidence=confidence)
        model = model_metrics(frame, task, view, threshold, penalty=penalty, lr_ci=lr_ci, confidence=confidence)
        lr = lr_table(table, frame, task, view, threshold, lr_ci=lr_ci, confidence=confidence)
        weighted = weighted_error_table(table, frame, task, penalty=penalty)
        roc = model_roc(frame, task, view, confidence=confidence)
    except InputError as exc:
        return {"included": False, "reason": str(exc)}
    reader_ids = sorted(table["reader_id"].astype(str).unique())
    simulated = [r for r in reader_ids if is_simulated(r)]
    profiles = {}
    for reader in simulated:
        profile = simulated_profile(reader, DEFAULT_PROFILES)
        profiles[reader] = (f"{profile.description} Made to reach sensitivity {profile.sensitivity:.2f} and "
                            f"specificity {profile.specificity:.2f} in expectation." if profile
                            else "a simulated reader")
    return to_jsonable({
        "included": True, "view": view.name, "positive": list(view.positive), "negative": list(view.negative),
        "threshold": threshold, "lr_method": lr_ci, "readers": reader_ids, "simulated": simulated,
        "simulated_profiles": profiles, "n_readings": int(len(table)),
        "comparison": _records(compare), "model": model, "lr": _records(lr), "weighted_error": _records(weighted),
        "points": _records(roc_points(compare)), "roc": _thinned_roc(roc),
    })


def _metric(key: str, label: str, interval: dict | None, kind: str, note: str = "", value=None) -> dict:
    """One headline number: the interval's fields (value, low, high, method, reason) plus a label."""
    entry = {"key": key, "label": label, "kind": kind, "note": note, "value": value, "low": None, "high": None,
             "method": "", "reason": ""}
    if interval:
        entry.update({k: interval.get(k) for k in ("value", "low", "high", "method", "reason", "confidence")})
    return entry


def headline(frame: pd.DataFrame, task: Task, evaluation: dict, penalty, penalty_name: str, threshold: float,
             bootstrap: int, seed: int, confidence: float, referral_cost=None,
             model_point_in_use: bool = True) -> list[dict]:
    """The headline numbers, from core.metrics.headline: the statistics and interval methods the Performance page
    shows (accuracy, sensitivity and specificity in the default binary view, weighted error, urgent-referral AUC or
    macro AUC). Multi-label tasks: the macro AUC over labels from the evaluation."""
    if task.kind == "multilabel":
        body = evaluation.get("multilabel") or {}
        return [_metric("macro_auc", "Macro AUC (over labels)", body.get("macro_auc_bootstrap"), "auc",
                        value=body.get("macro_auc"))]
    truth = class_indices(frame["label"], task.classes)
    probs = probabilities(frame, task)
    view = task.default_view()
    point = None
    if view is not None:
        data = binary_view_data(truth, probs, task.classes, view)
        scores = BinaryScores(data.truth, data.scores)
        point = scores.at_threshold(threshold) if scores.n_positive or scores.n_negative else None
    # The calls at the threshold in use: the model's own (its `predicted` column) at its operating point, else the
    # calls the threshold makes (core.infer.predictions.predicted_classes, the one place a call is made).
    calls = predicted_indices(frame, task) if model_point_in_use or view is None else class_indices(
        predicted_classes(probs, task, threshold, view), task.classes)
    items = headline_statistics(task, truth, probs, calls, penalty, point=point,
                                view_name=view.name if view else "", patient_ids=patient_ids(frame),
                                n_resamples=bootstrap, seed=seed, confidence=confidence,
                                calls_note=("share of images the model's own calls get right"
                                            if model_point_in_use else
                                            f"share of images called right at threshold {threshold:.3f}"),
                                penalty_name=penalty_name,
                                referred=referred_mask(frame) if has_referrals(frame) else None,
                                referral_cost=referral_cost)
    return [_metric(h.key, h.label, to_jsonable(h.interval), h.kind, h.note) for h in items]


SOFTWARE_PACKAGES = ("torch", "timm", "numpy", "scipy", "scikit-learn", "pandas", "plotly")


def software_versions() -> dict:
    """The versions of the packages that computed the numbers (CLAIM 23), read from the installed metadata."""
    import platform
    from importlib import metadata

    found = {"python": platform.python_version(), PRODUCT_NAME: core.__version__}
    for name in SOFTWARE_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def patient_separation(ws: Workspace, card: dict, frame: pd.DataFrame, elsewhere: bool = False) -> dict:
    """Whether any test patient also appears in the training dataset (CLAIM 21): counted from the two registered
    tables, or why it cannot be told (elsewhere: the model was trained elsewhere, model_card.trained_elsewhere)."""
    from core.data.ingest import load_registered

    train_id = card.get("training_dataset_id")
    test_patients = set(frame["patient_id"].dropna().astype(str)) if "patient_id" in frame else set()
    if not test_patients:
        return {"known": False, "reason": "the test set has no patient ids"}
    if elsewhere:
        return {"known": False, "reason": "the model was trained elsewhere and its training data are not recorded "
                                          "here"}
    if not train_id or ws.get_dataset(train_id) is None:
        return {"known": False, "reason": "the training dataset is not registered in this workspace"}
    try:
        table = load_registered(ws, train_id).table
    except (InputError, OSError) as exc:
        return {"known": False, "reason": f"the training dataset could not be read ({exc})"}
    train_patients = set(table["patient_id"].dropna().astype(str))
    shared = sorted(test_patients & train_patients)
    return {"known": True, "training_dataset": train_id, "test_patients": len(test_patients),
            "training_patients": len(train_patients), "shared_patients": len(shared), "examples": shared[:5]}


def _caveats(report: dict) -> None:
    """The report's caveats (core.report.caveats, the one owner) and the notices written from them."""
    caveats = report_caveats(report)
    report["caveats"] = [c.to_dict() for c in caveats]
    report["notices"] = [c.notice for c in caveats]


def report_from_predictions(frame: pd.DataFrame, task: Task | str, *, penalty=None,
                            penalty_name: str | None = None, threshold: float | None = None, readings=None,
                            include_readers: bool = True, include_penalties: bool = True, bootstrap: int = HEADLINE_RESAMPLES,
                            seed: int = 0, confidence: float = 0.95, lr_ci: str = "log", model: dict | None = None,
                            test_set: dict | None = None, title: str | None = None, referral_cost=None,
                            referral_band: dict | None = None, referral_cost_note: str | None = None,
                            subgroups: pd.DataFrame | None = None, scores_source: dict | None = None) -> dict:
    """The report of one predictions table (no workspace needed): see build_report. subgroups: one column per
    subgroup column, aligned with frame's rows (core.report.subgroups), for the Subgroups section. scores_source:
    the provenance of scores imported from a file (core.infer.predictions.imported_provenance; no model, no
    operating point), shown among the caveats."""
    task = get_task(task)
    level = check_confidence(confidence)
    if lr_ci not in LR_METHODS:
        raise InputError(f"likelihood-ratio interval method must be one of {LR_METHODS}, got {lr_ci!r}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    view = task.default_view() if task.kind != "multilabel" else None
    in_use = threshold_in_use((model or {}).get("operating_point"), threshold, view.name if view else None,
                              imported=scores_source is not None)
    threshold = in_use.value  # the model's own point unless the user chose one (core.metrics.threshold_in_use)
    single_label = task.kind != "multilabel"
    # A Penalty (build_report's, the dashboard's) is used as it is; a bare matrix is checked once, here.
    if single_label and not isinstance(penalty, Penalty):
        penalty = resolve_penalty(None, task, penalty, penalty_name)
    elif single_label:
        penalty = penalty.for_classes(task.classes)
    name, matrix = (penalty.name, penalty) if single_label else (None, None)
    if single_label:  # the price of a referral to a reader, per true class (given, else the matrix's default)
        referral_cost, given_note = resolve_referral_cost(None, task, matrix, referral_cost)
        referral_cost_note = referral_cost_note or given_note
    evaluation = evaluate_predictions(frame, task, penalty=matrix, threshold=threshold, bootstrap=int(bootstrap),
                                      seed=int(seed), confidence=level,
                                      subgroups=subgroups if single_label else None,
                                      meta={"operating_point": (model or {}).get("operating_point")})
    readers = None
    if include_readers and single_label:
        readers = readers_section(readings, frame, task, matrix, threshold, level, lr_ci)
    test_set = dict(test_set or {"id": None, "name": "predictions table", "synthetic": False})
    test_set.setdefault("n_images", evaluation.get("n_images"))
    test_set.setdefault("n_patients", evaluation.get("n_patients"))
    test_set.setdefault("class_counts", evaluation.get("class_counts"))
    report = {
        "format_version": REPORT_FORMAT_VERSION,
        "title": title or DEFAULT_TITLE,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "product": {"name": PRODUCT_NAME, "version": core.__version__},
        "task": task.to_dict(),
        "options": {"threshold": threshold, "threshold_source": in_use.source, "threshold_label": in_use.label,
                    "bootstrap": int(bootstrap), "seed": int(seed), "confidence": level,
                    "include_readers": bool(include_readers), "include_penalties": bool(include_penalties),
                    "lr_method": lr_ci, "penalty_name": name},
        "model": model or {},
        "scores_source": scores_source,
        "test_set": test_set,
        "penalty": {"name": name, "matrix": penalty.matrix, "referral_cost": referral_cost,
                    "referral_cost_note": referral_cost_note} if single_label else None,
        "headline": headline(frame, task, evaluation, matrix, name or "", threshold, int(bootstrap), int(seed), level,
                             referral_cost if single_label else None,
                             model_point_in_use=in_use.source != "user"),
        "referrals": referrals_section(frame, task, referral_band, (model or {}).get("operating_point"), level),
        "evaluation": evaluation,
        "readers": readers,
        "decision": decision_section(frame, task, matrix, threshold) if single_label else None,
        "software": software_versions(),
        "failures": failure_cases(frame, task),
    }
    report["audit"] = None  # no workspace: no stored dataset audit to read
    _caveats(report)
    report["labels"] = {"synthetic_data": bool(test_set.get("synthetic")),
                        "simulated_readers": bool(readers and readers.get("simulated"))}
    report["methods"] = methods_section(report)
    return to_jsonable(report)


def build_report(ws: Workspace, run_id: str, test_set_id: str, penalty=None, threshold: float | None = None,
                 include_readers: bool = True, bootstrap: int = HEADLINE_RESAMPLES, seed: int = 0, *, confidence: float = 0.95,
                 include_penalties: bool = True, penalty_name: str | None = None, lr_ci: str = "log",
                 readings: pd.DataFrame | None = None, title: str | None = None) -> dict:
    """Everything the stakeholder report shows, as one JSON-safe dict (see render_html to draw it).

    penalty: a Penalty, or a k x k matrix in class order (default: the workspace's active matrix for the task,
    else the task's); resolved once here and passed on. threshold: score threshold of the binary views' operating point (default 0.5). bootstrap:
    resamples by patient for the bootstrap intervals (0 = none), seeded by `seed`. readings: the readers'
    table (default: those stored for the test set).
    """
    frame, meta, task = read_run_predictions(ws, run_id, test_set_id)
    if task.kind != "multilabel":
        penalty = resolve_penalty(ws, task, penalty, penalty_name)
        referral_cost, referral_note = resolve_referral_cost(ws, task, penalty)
    else:
        penalty, referral_cost, referral_note = None, None, None
    if include_readers and readings is None and task.kind != "multilabel":
        from core.readers import list_readings

        readings = list_readings(ws, test_set_id)
    scores_source = imported_provenance(meta)  # scores imported from a file: no model to describe
    card = {} if scores_source else model_card(ws, run_id)
    if scores_source:
        scores_source = {**scores_source, "run_name": (ws.get_run(run_id) or {}).get("name") or run_id}
    else:
        card["checkpoint_sha256"] = meta.get("checkpoint_sha256")
    report = report_from_predictions(frame, task, penalty=penalty, threshold=threshold,
                                     readings=readings, include_readers=include_readers,
                                     include_penalties=include_penalties, bootstrap=bootstrap, seed=seed,
                                     confidence=confidence, lr_ci=lr_ci, model=card, title=title,
                                     test_set={"id": test_set_id}, referral_cost=referral_cost,
                                     referral_band=meta.get("referral_band"), referral_cost_note=referral_note,
                                     subgroups=registered_subgroups(ws, test_set_id, frame),
                                     scores_source=scores_source)
    report["test_set"] = to_jsonable(describe_test_set(ws, test_set_id, report["evaluation"], meta))
    report["test_set"]["patient_separation"] = to_jsonable(
        patient_separation(ws, card, frame, elsewhere=trained_elsewhere(ws.get_run(run_id))))
    if include_readers and task.kind != "multilabel":
        from core.report.mrmc_section import mrmc_section

        report["mrmc"] = to_jsonable(mrmc_section(ws, test_set_id))
    report["audit"] = to_jsonable(stored_audit(ws, test_set_id, card.get("training_dataset_id")))
    _caveats(report)
    report["labels"]["synthetic_data"] = bool(report["test_set"].get("synthetic"))
    report["methods"] = to_jsonable(methods_section(report))
    return report
