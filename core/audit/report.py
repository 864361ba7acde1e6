"""The dataset audit: duplicates, patient leakage, properties, shift against training data and label issues, as one
JSON-ready dict, cached in the workspace by the datasets' fingerprints."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from core.audit.duplicates import NEAR_THRESHOLD_BITS, exact_duplicates, near_duplicates
from core.audit.patients import patient_leakage
from core.audit.properties import properties
from core.audit.scan import scan_dataset
from core.audit.shift import ALPHA, AUC_FLAG, KS_FLAG, TVD_FLAG, domain_classifier, property_tests, reasons, \
    sample_rows
from core.data.dataset import Dataset
from core.store import Workspace
from core.store.files import write_atomically

AUDIT_VERSION = 1
AUDIT_KEYS = ("exact_duplicates", "near_duplicates", "patient_leakage", "properties", "shift", "label_issues")


@dataclass(frozen=True)
class AuditOptions:
    """features: compute backbone features (domain classifier, label issues); off, the audit only decodes pixels.
    image_size: the backbone's input size (None: its own)."""

    features: bool = True
    image_size: int | None = None
    near_threshold: int = NEAR_THRESHOLD_BITS


def audit_key(fingerprint: str, task: str, against_fingerprint: str | None = None, run_id: str | None = None,
              options: AuditOptions = AuditOptions()) -> str:
    payload = {"version": AUDIT_VERSION, "data": [fingerprint, task], "against": against_fingerprint,
               "run": run_id, "options": asdict(options)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def audit_path(ws: Workspace, key: str) -> Path:
    return ws.cache_dir / "audit" / f"{key}.json"


def _describe(ds: Dataset) -> dict:
    return {"source": ds.source, "fingerprint": ds.fingerprint, "task": ds.task.name, "n_images": len(ds),
            "splits": ds.splits()}


def _unreadable(scan) -> list[dict]:
    bad = scan[scan["error"].notna()]
    return [{"image_id": i, "error": e} for i, e in zip(bad["image_id"], bad["error"])]


def run_audit(ds: Dataset, against: Dataset | None = None, *, workspace: Workspace, run: dict | None = None,
              options: AuditOptions = AuditOptions(),
              progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Audit `ds` (and compare it with the training data `against`); `run` (a registry row) adds label issues."""
    from core.audit.features import FeatureExtractor, FeatureSpec

    started = time.perf_counter()
    seconds = {}

    def step(name):
        return (lambda done, total: progress(name, done, total)) if progress else None

    scan = scan_dataset(ds, step("scanning images"))
    scan_against = scan_dataset(against, step("scanning training images")) if against is not None else None
    seconds["scan"] = time.perf_counter() - started
    report = {"version": AUDIT_VERSION, "dataset": _describe(ds),
              "against": _describe(against) if against is not None else None,
              "exact_duplicates": exact_duplicates(scan, scan_against),
              "near_duplicates": near_duplicates(scan, scan_against, options.near_threshold),
              "patient_leakage": patient_leakage(scan, scan_against),
              "properties": {"data": properties(scan),
                             "against": properties(scan_against) if scan_against is not None else None},
              "shift": None, "label_issues": None,
              "unreadable": {"data": _unreadable(scan),
                             "against": _unreadable(scan_against) if scan_against is not None else None}}
    extractor = None
    if options.features and (against is not None or run is not None):
        spec = FeatureSpec.of_run(run) if run is not None else FeatureSpec.default(options.image_size)
        extractor = FeatureExtractor(workspace, spec)
    if against is not None:
        tests = property_tests(scan, scan_against)
        domain = None
        if extractor is not None:
            t0 = time.perf_counter()
            mine, theirs = sample_rows(len(ds)), sample_rows(len(against), seed=1)
            domain = domain_classifier(extractor.features(ds, mine, step("features")),
                                       extractor.features(against, theirs, step("training features")))
            domain["backbone"] = extractor.spec.backbone
            seconds["domain_classifier"] = time.perf_counter() - t0
        why = reasons(tests, scan, scan_against, domain)
        report["shift"] = {"flagged": bool(why), "reasons": why, "tests": tests,
                           "domain_classifier": domain or {"auc": None, "flagged": False,
                                                           "note": "not computed (audit without backbone features)"},
                           "thresholds": {"p_value_below": ALPHA, "ks_statistic_at_least": KS_FLAG,
                                          "total_variation_at_least": TVD_FLAG, "auc_at_least": AUC_FLAG}}
    if run is not None:
        from core.audit.labels import label_issues

        if extractor is None:
            report["label_issues"] = {"run": run["id"], "cases": [], "n_flagged": 0,
                                      "note": "not computed (audit without backbone features)"}
        else:
            t0 = time.perf_counter()
            report["label_issues"] = label_issues(ds, extractor.features(ds, progress=step("features")), run["id"])
            seconds["label_issues"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    report["seconds"] = seconds
    return report


def cached_audit(ws: Workspace, ds: Dataset, against: Dataset | None = None, run: dict | None = None,
                 options: AuditOptions = AuditOptions(), progress=None, refresh: bool = False) -> dict:
    """The audit from the workspace cache, computed and stored when missing (or when `refresh`)."""
    key = audit_key(ds.fingerprint, ds.task.name, against.fingerprint if against is not None else None,
                    run["id"] if run else None, options)
    path = audit_path(ws, key)
    if path.exists() and not refresh:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache entry is recomputed
    report = run_audit(ds, against, workspace=ws, run=run, options=options, progress=progress)
    report["options"] = asdict(options)
    write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1, default=str)))
    return report


def read_cached_audit(ws: Workspace, key: str) -> dict | None:
    path = audit_path(ws, key)
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None
