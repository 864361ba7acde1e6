"""The reporting checklist: STARD 2015 and CLAIM items as data, filled from the report dict where software knows the
answer and marked "to be completed by the authors" where it does not (never guessed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.report.model_card import (TRAINED_ELSEWHERE, elsewhere_facts, elsewhere_sentence, head_fitting,
                                    trained_elsewhere)

TO_BE_COMPLETED = "To be completed by the authors."
# CLAIM item numbers follow the published 42-item checklist (Mongan, Moy & Kahn 2020); the 2024 update (Tejani et
# al. 2024) revises wording: authors check the numbers against the form their journal asks for.
CLAIM_NUMBERING_NOTE = ("CLAIM item numbers follow the 42-item checklist (Mongan, Moy & Kahn 2020) whose topics the "
                        "CLAIM 2024 update (Tejani et al. 2024) keeps; check them against the form your journal uses.")


@dataclass(frozen=True)
class ChecklistItem:
    """One item: the standard, its number, its topic and the key of the filler that answers it (None: authors)."""

    standard: str
    number: str
    topic: str
    filler: str | None = None


ITEMS: tuple[ChecklistItem, ...] = (
    ChecklistItem("STARD", "1", "Title identifies a diagnostic accuracy study"),
    ChecklistItem("STARD", "2", "Structured abstract"),
    ChecklistItem("STARD", "3", "Scientific and clinical background, intended use of the index test"),
    ChecklistItem("STARD", "4", "Study objectives and hypotheses"),
    ChecklistItem("STARD", "5", "Prospective or retrospective data collection"),
    ChecklistItem("STARD", "6", "Eligibility criteria"),
    ChecklistItem("STARD", "7", "Basis on which potentially eligible participants were identified"),
    ChecklistItem("STARD", "8", "Setting, location and dates of identification", "data_source"),
    ChecklistItem("STARD", "9", "Consecutive, random or convenience series"),
    ChecklistItem("STARD", "10a", "Index test in sufficient detail to allow replication", "index_test"),
    ChecklistItem("STARD", "10b", "Reference standard in sufficient detail", "reference_standard"),
    ChecklistItem("STARD", "11", "Rationale for choosing the reference standard"),
    ChecklistItem("STARD", "12a", "Positivity cut-off of the index test; pre-specified or not", "operating_point"),
    ChecklistItem("STARD", "12b", "Positivity cut-offs of the reference standard"),
    ChecklistItem("STARD", "13a", "Clinical information available to the performers of the index test", "blinding"),
    ChecklistItem("STARD", "13b", "Information available to the assessors of the reference standard"),
    ChecklistItem("STARD", "14", "Methods for estimating or comparing measures of accuracy", "statistics"),
    ChecklistItem("STARD", "15", "Handling of indeterminate index test or reference standard results",
                  "indeterminate"),
    ChecklistItem("STARD", "16", "Handling of missing data", "missing"),
    ChecklistItem("STARD", "17", "Analyses of variability in accuracy (subgroups)", "subgroups"),
    ChecklistItem("STARD", "18", "Intended sample size and how it was determined"),
    ChecklistItem("STARD", "19", "Flow of participants (diagram)", "flow"),
    ChecklistItem("STARD", "20", "Baseline demographic and clinical characteristics"),
    ChecklistItem("STARD", "21a", "Distribution of severity of disease in those with the target condition",
                  "class_counts"),
    ChecklistItem("STARD", "21b", "Distribution of alternative diagnoses in those without it", "class_counts"),
    ChecklistItem("STARD", "22", "Time interval and interventions between index test and reference standard"),
    ChecklistItem("STARD", "23", "Cross tabulation of index test results by the reference standard", "cross_table"),
    ChecklistItem("STARD", "24", "Estimates of diagnostic accuracy and their precision", "estimates"),
    ChecklistItem("STARD", "25", "Adverse events from the index test or the reference standard"),
    ChecklistItem("STARD", "26", "Study limitations", "limitations"),
    ChecklistItem("STARD", "27", "Implications for practice"),
    ChecklistItem("STARD", "28", "Registration number and registry"),
    ChecklistItem("STARD", "29", "Where the full study protocol can be accessed"),
    ChecklistItem("STARD", "30", "Sources of funding and other support"),
    ChecklistItem("CLAIM", "7", "Data sources", "data_source"),
    ChecklistItem("CLAIM", "8", "Eligibility criteria"),
    ChecklistItem("CLAIM", "9", "Data preprocessing steps", "preprocessing"),
    ChecklistItem("CLAIM", "12", "De-identification methods"),
    ChecklistItem("CLAIM", "13", "How missing data were handled", "missing"),
    ChecklistItem("CLAIM", "14", "Definition of the reference standard", "reference_standard"),
    ChecklistItem("CLAIM", "16", "Source of reference-standard annotations; annotators' qualifications"),
    ChecklistItem("CLAIM", "20", "How data were assigned to partitions", "partitions"),
    ChecklistItem("CLAIM", "21", "Level at which partitions are disjoint", "separation"),
    ChecklistItem("CLAIM", "22", "Detailed description of the model", "index_test"),
    ChecklistItem("CLAIM", "23", "Software libraries and versions", "software"),
    ChecklistItem("CLAIM", "24", "Initialisation of model parameters", "weights"),
    ChecklistItem("CLAIM", "25", "Details of training (hyperparameters, seeds)", "training"),
    ChecklistItem("CLAIM", "26", "Method of selecting the final model", "model_selection"),
    ChecklistItem("CLAIM", "28", "Metrics of model performance", "statistics"),
    ChecklistItem("CLAIM", "29", "Statistical measures of uncertainty", "estimates"),
    ChecklistItem("CLAIM", "33", "Flow of participants or cases", "flow"),
    ChecklistItem("CLAIM", "34", "Demographic and clinical characteristics by partition"),
    ChecklistItem("CLAIM", "35", "Performance on all data partitions", "partition_performance"),
    ChecklistItem("CLAIM", "36", "Estimates of diagnostic accuracy and their precision", "estimates"),
    ChecklistItem("CLAIM", "37", "Failure analysis of incorrectly classified cases", "failures"),
    ChecklistItem("CLAIM", "38", "Study limitations", "limitations"),
    ChecklistItem("CLAIM", "41", "Where the full protocol, data and code can be accessed"),
    ChecklistItem("CLAIM", "42", "Sources of funding"),
)


# -- the fillers: each reads the report dict and returns the answer text, or None when the report does not know --
def _model(r: dict) -> dict:
    return r.get("model") or {}


def _test(r: dict) -> dict:
    return r.get("test_set") or {}


def _data_source(r: dict) -> str:
    t = _test(r)
    text = f"Test set \u201c{t.get('name')}\u201d (id {t.get('id')})"
    if t.get("fingerprint"):
        text += f", content fingerprint {str(t['fingerprint'])[:16]}"
    if t.get("synthetic"):
        text += "; synthetic images generated by the product (no real patient)"
    return text + ". Setting, location and dates of acquisition: " + TO_BE_COMPLETED.lower()


def _index_test(r: dict) -> str | None:
    m = _model(r)
    if trained_elsewhere(r):  # what its user's card (or its scores' file) says, and what it does not
        facts = [f"{what}: {value}" for what, value in elsewhere_facts(r) if what != "Origin"]
        run = f"; run {m['run_id']}" if m.get("run_id") else ""
        what = ("Scores of an image classifier trained elsewhere, imported from a file" if r.get("scores_source")
                else "Image classifier trained elsewhere, not by this product")
        return f"{what}. " + "; ".join(facts) + run + "."
    if not m:
        return None
    text = (f"Image classifier: backbone {m.get('backbone')}, {m.get('mode')} mode, head {m.get('head')}, input "
            f"{m.get('image_size')} px")
    if m.get("checkpoint_sha256"):
        text += f"; checkpoint SHA-256 {m['checkpoint_sha256']}"
    return text + f"; run {m.get('run_id')}."


def _reference_standard(r: dict) -> str:
    task = r.get("task") or {}
    return (f"The label stored with each test image, one of {', '.join(task.get('classes') or [])}. How those "
            "labels were established (who, how, with what information): " + TO_BE_COMPLETED.lower())


def _operating_point(r: dict) -> str:
    options = r.get("options") or {}
    threshold = float(options.get("threshold", 0.5))  # 0.0 is a threshold too
    point = _model(r).get("operating_point") or {}
    text = f"A case is positive when its score is at least {threshold:g} (report threshold)."
    stored = point.get("threshold")
    if stored is not None and abs(float(stored) - threshold) < 1e-9:
        return text + (f" Pre-specified: chosen by rule \u201c{point.get('rule')}\u201d on {point.get('source')} "
                       "before the test set was seen.")
    if stored is not None:
        return text + (f" Not the pre-specified point: the model's stored operating point is {float(stored):g} "
                       f"(rule \u201c{point.get('rule')}\u201d on {point.get('source')}); the report's threshold was "
                       "chosen by the user.")
    return text + " No pre-specified operating point is stored with the model; the threshold was chosen by the user."


def _blinding(r: dict) -> str:
    readers = r.get("readers") or {}
    text = ("The imported scores were made elsewhere; what information their model saw: " + TO_BE_COMPLETED.lower()
            if r.get("scores_source") else
            "The model sees only the image pixels (no clinical information, no reference standard).")
    if readers.get("simulated"):
        text += " Readers " + ", ".join(readers["simulated"]) + " are simulated (no human reading)."
    humans = [x for x in readers.get("readers") or [] if x not in set(readers.get("simulated") or [])]
    if humans:
        text += " Information available to the human readers: " + TO_BE_COMPLETED.lower()
    return text


def _statistics(r: dict) -> str:
    methods = (r.get("methods") or {}).get("interval_methods") or []
    return "Interval methods used: " + "; ".join(methods) + "." if methods else "See the methods section."


def _indeterminate(r: dict) -> str:
    source = r.get("scores_source")
    if source:  # imported scores: the file's gaps are counted by the import (core.infer.imported)
        missing = int(source.get("n_images_without_scores") or 0)
        return (f"Every test image with a score in the imported file is analysed; {missing} test image(s) had no "
                "score and were left out of the evaluation.")
    excluded = _test(r).get("excluded_images") or 0
    return (f"The model gives a call for every readable image (no indeterminate output); {excluded} unreadable "
            "image(s) were left out of the evaluation.")


def _missing(r: dict) -> str:
    text = _indeterminate(r)
    readers = r.get("readers") or {}
    partial = [row.get("reader_id") for row in readers.get("comparison") or [] if row.get("partial")]
    if partial:
        text += " Readers who did not grade every image are analysed on the images they graded: " + \
                ", ".join(map(str, partial)) + "."
    return text


def _subgroups(r: dict) -> str:
    views = [v.get("name") for v in (r.get("evaluation") or {}).get("binary_views") or []]
    text = "Per-class results and each binary view of the task are reported"
    text += (" (" + "; ".join(map(str, views)) + ")") if views else ""
    return text + ". Demographic subgroups: " + TO_BE_COMPLETED.lower()


def _flow(r: dict) -> str:
    f = flow_counts(r)
    return (f"{f['registered']} images registered, {f['excluded']} excluded (unreadable), {f['analysed']} analysed "
            f"from {f['patients'] or 'unknown'} patients; see the flow diagram.")


def _class_counts(r: dict) -> str:
    counts = _test(r).get("class_counts") or {}
    return "Images per reference-standard class: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "."


def _cross_table(r: dict) -> str:
    return "The k x k confusion matrix against the reference standard is in the Confusion matrix section."


def _estimates(r: dict) -> str:
    from core.report.format import interval

    return "; ".join(f"{h['label']} {interval(h, h['kind'])}" for h in r.get("headline") or []) + "."


def _limitations(r: dict) -> str:
    return "Software-known limitations are listed in the methods section; the authors add the study's own."


def _preprocessing(r: dict) -> str | None:
    p = _model(r).get("preprocessing")
    if not p:
        return None
    stated = " (as stated on the model card its user supplied)" if trained_elsewhere(r) else ""
    return (f"Input {p.get('input_size')}, {p.get('interpolation')} interpolation, framing {p.get('framing')}, "
            f"normalised with mean {p.get('mean')} and standard deviation {p.get('std')}{stated}.")


def _partitions(r: dict) -> str | None:
    m = _model(r)
    if trained_elsewhere(r):
        return (f"Training and validation data: {TRAINED_ELSEWHERE}. Test set \u201c{_test(r).get('name')}\u201d "
                f"({_test(r).get('n_images')} images) evaluated here.")
    if not m:
        return None
    return (f"Training data \u201c{m.get('training_dataset')}\u201d ({m.get('training_images')} training, "
            f"{m.get('validation_images')} validation images; patient-level, class-stratified split); test set "
            f"\u201c{_test(r).get('name')}\u201d ({_test(r).get('n_images')} images) held out.")


def _separation(r: dict) -> str | None:
    s = _test(r).get("patient_separation") or {}
    if not s:
        return None
    if not s.get("known"):
        return f"Patient-level separation could not be checked: {s.get('reason')}. " + TO_BE_COMPLETED
    return (f"Patients: {s['shared_patients']} of the {s['test_patients']} test patients also appear among the "
            f"{s['training_patients']} patients of the training dataset (checked by patient id).")


def _software(r: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in (r.get("software") or {}).items()) + "."


def _weights(r: dict) -> str | None:
    m = _model(r)
    if trained_elsewhere(r):
        sha = None if r.get("scores_source") else dict(elsewhere_facts(r)).get("File SHA-256")  # the model's file
        return (f"Initialisation and seed: {TRAINED_ELSEWHERE}." + (f" The weights evaluated are the file with "
                                                                    f"SHA-256 {sha}." if sha else ""))
    return f"Weights source: {m.get('weights_source')}; seed {m.get('seed')}." if m else None


def _training(r: dict) -> str | None:
    m = _model(r)
    if trained_elsewhere(r):
        return elsewhere_sentence()
    if not m:
        return None
    fitted = head_fitting(m)
    how = (f"Head: {fitted}" if fitted else f"Optimiser {m.get('optimizer')}, learning rate {m.get('learning_rate')}, "
           f"batch {m.get('batch_size')}, {m.get('epochs_run')} of {m.get('epochs')} epochs")
    return f"{how}, class balancing {m.get('balancing')}, seed {m.get('seed')}, device {m.get('device')}."


def _model_selection(r: dict) -> str | None:
    m = _model(r)
    if trained_elsewhere(r):
        return elsewhere_sentence()
    if not m or not m.get("validation_metric"):
        return None
    epoch = f" (epoch {m['best_epoch']})" if m.get("best_epoch") is not None else ""
    return f"Best epoch by validation {m.get('validation_metric')}{epoch}."


def _partition_performance(r: dict) -> str | None:
    m = _model(r)
    if not m or m.get("best_validation_metric") is None:
        return None
    return (f"Validation {m.get('validation_metric')} {float(m['best_validation_metric']):.3f}; test-set results in "
            "this report.")


def _failures(r: dict) -> str:
    f = r.get("failures") or {}
    cases = f.get("cases") or []
    if not cases:
        return "The confusion matrix names every error type; " + (f.get("reason") or "no misclassified case") + "."
    listed = "; ".join(f"{c['image_id']} ({c['true']} called {c['predicted']}, p={c['probability']:.2f})"
                       for c in cases)
    return f"The confusion matrix names every error type. Representative errors ({f.get('rule')}): {listed}."


FILLERS: dict[str, Callable[[dict], str | None]] = {
    "data_source": _data_source, "index_test": _index_test, "reference_standard": _reference_standard,
    "operating_point": _operating_point, "blinding": _blinding, "statistics": _statistics,
    "indeterminate": _indeterminate, "missing": _missing, "subgroups": _subgroups, "flow": _flow,
    "class_counts": _class_counts, "cross_table": _cross_table, "estimates": _estimates,
    "limitations": _limitations, "preprocessing": _preprocessing, "partitions": _partitions,
    "separation": _separation, "software": _software, "weights": _weights, "training": _training,
    "model_selection": _model_selection, "partition_performance": _partition_performance, "failures": _failures,
}


def flow_counts(report: dict) -> dict:
    """The STARD flow's boxes, from the test-set facts in the report (nothing recounted)."""
    t = report.get("test_set") or {}
    analysed = int(t.get("n_images") or 0)
    excluded = int(t.get("excluded_images") or 0)
    registered = int(t.get("registered_images") or (analysed + excluded))
    return {"registered": registered, "excluded": excluded, "analysed": analysed, "patients": t.get("n_patients"),
            "class_counts": dict(t.get("class_counts") or {})}


def fill_checklist(report: dict) -> list[dict]:
    """Every item with its answer; `known` False (answer "To be completed by the authors.") where the report does
    not know it."""
    rows = []
    for item in ITEMS:
        answer = FILLERS[item.filler](report) if item.filler else None
        rows.append({"standard": item.standard, "item": item.number, "topic": item.topic,
                     "known": answer is not None, "answer": answer if answer is not None else TO_BE_COMPLETED})
    return rows
