"""Every caveat the app knows about one model on one test set, in plain words: the one list the report's first
page (HTML and PDF), the report's notices and the presentation's "What is not known" slide all show.

Sources, each read from its owner and never recomputed here: the test set and model card (synthetic data, adapted
or recalibrated calls: core.infer.site_check.adaptation_text), the readers (simulated), the stored dataset audit
(shift, exact duplicates, patients also in training: core.audit), the patient separation the report counts, the
subgroups' `small` flag (core.metrics.subgroups) and the headline intervals (core.metrics.intervals)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.infer.site_check import adaptation_text
from core.metrics.intervals import informative_bounds
from core.report.format import fmt


@dataclass(frozen=True)
class Caveat:
    """One caveat: `head` a short upper-case name ("SHIFT"), `text` the plain sentence, `explanation` why it
    matters (may be empty)."""

    key: str
    head: str
    text: str
    explanation: str = ""

    @property
    def notice(self) -> str:
        """'HEAD: text', the form the report's notices take."""
        return f"{self.head}: {self.text}"

    def to_dict(self) -> dict:
        return asdict(self)


def stored_audit(ws, test_set_id: str, training_dataset_id: str | None) -> dict | None:
    """The findings of the dataset audit stored for this test set against the training data (the fullest cached
    one), or None when none was run or it cannot be read. Never runs an audit. {"shift", "exact_duplicates",
    "exact_across", "patients_across"}: the shift section, the extra exact copies within the test set, the test
    images identical to training images and the patients also in training."""
    from core.audit.jobs import audit_state
    from core.errors import InputError

    try:
        state = audit_state(ws, test_set_id, training_dataset_id)
    except (InputError, OSError):
        return None
    audit = state.get("report") if state.get("status") == "done" else None
    if not audit:
        return None
    exact = audit.get("exact_duplicates") or {}
    leakage = audit.get("patient_leakage") or {}
    shift = audit.get("shift")
    return {"against": (audit.get("against") or {}).get("id") if isinstance(audit.get("against"), dict) else None,
            "shift": {"flagged": bool(shift.get("flagged")), "reasons": [str(r) for r in shift.get("reasons") or []]}
            if isinstance(shift, dict) else None,
            "exact_duplicates": int(exact.get("n_extra_copies") or 0),
            "exact_duplicate_groups": len(exact.get("groups") or []),
            "exact_across": sum(len(a.get("data") or []) for a in exact.get("across") or []),
            "patients_across": len(leakage.get("across") or []) if leakage.get("across") is not None else None}


def audit_stamp(ws, test_set_id: str, training_dataset_id: str | None) -> tuple:
    """When the stored audits of this test set against the training data last changed (their files' mtimes; no
    file is read): a cache key, so that a cached report picks up an audit finished after it was built."""
    from core.audit.jobs import FULL, PIXELS_ONLY, registered_key
    from core.audit.report import audit_path
    from core.errors import InputError

    out = []
    for options in (FULL, PIXELS_ONLY):
        try:
            path = audit_path(ws, registered_key(ws, test_set_id, training_dataset_id, None, options))
            out.append(path.stat().st_mtime if path.exists() else None)
        except (InputError, OSError):
            out.append(None)
    return tuple(out)


def _shift(shift: dict | None, checked: bool) -> Caveat:
    if not shift:
        why = ("the audit was run without the training data" if checked else "no dataset audit was run")
        return Caveat("shift_unchecked", "SHIFT NOT CHECKED",
                      f"Whether these test scans differ from the training scans (dataset shift) has not been checked "
                      f"({why}).",
                      "Run the audit on the Test sets page: a model can do worse on scans unlike those it learnt from.")
    if shift.get("flagged"):
        return Caveat("shift", "SHIFT",
                      "Shift warning: the audit found the test scans differ from the training scans ("
                      + "; ".join(map(str, shift.get("reasons") or [])) + ").",
                      "A model can do worse on scans unlike those it learnt from: these numbers may not carry over.")
    return Caveat("no_shift", "NO SHIFT FOUND",
                  "The audit found no sign that the test scans differ from the training scans.",
                  "That lowers, but does not remove, the risk that the numbers will not carry over.")


def plural(n: int, one: str, many: str) -> str:
    """'1 false alarm', '3 false alarms': a count with its noun (the report's and the slides' one rule)."""
    return f"{n:,} {one if n == 1 else many}"


def report_caveats(report: dict, shift: dict | None = None) -> list[Caveat]:
    """The caveats of one report (core.report.build), most serious first. `shift`: an audit shift section that
    replaces the one the report stored (the presentation passes the audit it read); the stored audit is
    report["audit"] (core.report.caveats.stored_audit), None when no audit was run."""
    test_set = report.get("test_set") or {}
    model = report.get("model") or {}
    readers = report.get("readers") or {}
    audit = report.get("audit") or None
    out: list[Caveat] = []
    if test_set.get("synthetic"):
        out.append(Caveat("synthetic", "SYNTHETIC DATA",
                          "The test images are procedurally generated (no real patient). The numbers show how the "
                          "product works, not how a model would perform in a clinic."))
    if model.get("training_dataset_synthetic"):
        out.append(Caveat("synthetic_training", "SYNTHETIC TRAINING DATA", "The model was trained on synthetic images."))
    adapted = adaptation_text(model, model.get("run_name")) if model else None
    if adapted:
        out.append(Caveat("adapted", "ADAPTED CALLS", adapted,
                          "The calls are not the original model's: its numbers do not describe this run."))
    scores_source = report.get("scores_source")
    if scores_source:  # scores imported from a file (core.infer.imported): no model of this workspace behind them
        from core.infer.imported import provenance_text

        out.append(Caveat("imported_scores", "IMPORTED SCORES", provenance_text(scores_source),
                          "The app checked the file's image names and numbers, not the model that produced them."))
    out.append(_shift(shift if shift is not None else (audit or {}).get("shift"), audit is not None))
    if audit:
        copies, across = int(audit.get("exact_duplicates") or 0), int(audit.get("exact_across") or 0)
        if copies:
            out.append(Caveat("duplicates", "DUPLICATES",
                              f"The audit found {plural(copies, 'exact duplicate image', 'exact duplicate images')} "
                              "in the test set: each copy counts again in every number.",
                              "Repeated images make the test set look larger and the intervals narrower than they "
                              "are."))
        if across:
            out.append(Caveat("seen_images", "IMAGES ALSO IN TRAINING",
                              f"{plural(across, 'test image is', 'test images are')} pixel for pixel identical to "
                              "training images: the model has seen them.",
                              "Numbers on images the model learnt from are too good."))
    separation = test_set.get("patient_separation") or {}
    shared = int(separation.get("shared_patients") or 0) if separation.get("known") else 0
    if not shared and audit and audit.get("patients_across"):
        shared = int(audit["patients_across"])
    if shared:
        out.append(Caveat("patient_overlap", "PATIENTS ALSO IN TRAINING",
                          f"{plural(shared, 'patient of the test set also has', 'patients of the test set also have')}"
                          " images in the training data.",
                          "The model may recognise the patient rather than the disease: the numbers may be too good."))
    if readers.get("simulated"):
        out.append(Caveat("simulated_readers", "SIMULATED READERS",
                          ", ".join(map(str, readers["simulated"])) + " are made-up readers whose answers were drawn "
                          "at random to match stated profiles; they are not real people."))
    evaluation = report.get("evaluation") or {}
    small = [f"{column} = {row.get('value')}" for column, rows in (evaluation.get("subgroups") or {}).items()
             for row in rows or [] if row.get("small")]
    if small:
        limit = next((t.get("small_group") for t in (evaluation.get("subgroup_tests") or {}).values()
                      if isinstance(t, dict) and t.get("small_group")), None)
        out.append(Caveat("small_groups", "SMALL GROUPS",
                          f"{plural(len(small), 'subgroup has', 'subgroups have')} fewer than {limit or 'a few'} "
                          f"positive or negative images ({', '.join(small[:5])}{' ...' if len(small) > 5 else ''}).",
                          "Read their intervals, not their point values."))
    degenerate = [f"{h.get('label')} {fmt(h.get('value'), h.get('kind'))}"
                  + (f" ({h['reason']})" if h.get("reason") else "")
                  for h in report.get("headline") or []
                  if h.get("value") is not None and not informative_bounds(h.get("low"), h.get("high"))]
    if degenerate:
        out.append(Caveat("degenerate_intervals", "NO INTERVAL",
                          "These numbers have no informative confidence interval: " + "; ".join(degenerate) + ".",
                          "A single value with no range says nothing about how sure it is."))
    return out
