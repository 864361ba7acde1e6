"""Presentation mode's slides: the report dict told in plain words, each number with a one-line lay explanation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from core.metrics.intervals import informative_bounds
from core.models.registry import plain_backbone_name
from core.report.caveats import plural, report_caveats
from core.report.format import fmt
from core.report.model_card import trained_elsewhere

_COUNT_WORDS = {1: "One", 2: "Two", 3: "Three"}  # failure cases shown: up to three


@dataclass(frozen=True)
class Fact:
    """One statement on a slide and, under it, what the number means for someone who is not a statistician."""

    text: str
    explanation: str = ""


@dataclass(frozen=True)
class Slide:
    key: str
    title: str
    facts: list[Fact]
    cases: list[dict] = field(default_factory=list)  # failure cases (image_id, true, predicted, probability)
    figure: Any = None  # a plotly Figure drawn under the facts (its height follows the screen's: pages/present.py)


# What fits one slide on a 1366 x 768 screen in presentation mode's type (assets/present.css sizes it by the
# screen's height): facts are measured in lines of about this many characters; a slide with more is continued.
LINE_CHARS, CAPTION_CHARS, CAPTION_LINE = 100, 150, 0.7
SLIDE_LINES = 11
FIGURE_LINES = 3  # a slide with a figure keeps this many lines of facts; the figure takes the rest


def fact_lines(fact: Fact) -> float:
    """How many lines of a slide a fact takes (its explanation in smaller type)."""
    return (math.ceil(len(fact.text) / LINE_CHARS)
            + (CAPTION_LINE * math.ceil(len(fact.explanation) / CAPTION_CHARS) if fact.explanation else 0.0))


def _continued(slide: Slide) -> list[Slide]:
    """The slide, or its facts shared out over as many slides as they need ("What is not known (1 of 2)")."""
    budget = FIGURE_LINES if slide.figure is not None or slide.cases else SLIDE_LINES
    pages: list[list[Fact]] = [[]]
    used = 0.0
    for fact in slide.facts:
        lines = fact_lines(fact)
        if pages[-1] and used + lines > budget:
            pages.append([])
            used = 0.0
        pages[-1].append(fact)
        used += lines
    if len(pages) == 1:
        return [slide]
    return [replace(slide, key=_page_key(slide.key, i),
                    title=f"{slide.title} ({i + 1} of {len(pages)})", facts=facts,
                    cases=slide.cases if i == len(pages) - 1 else [],
                    figure=slide.figure if i == len(pages) - 1 else None)
            for i, facts in enumerate(pages)]


def _page_key(key: str, index: int) -> str:
    """The key of a slide's page `index` (from 0): "unknown", "unknown-2", "unknown-3"..."""
    return key if index == 0 else f"{key}-{index + 1}"


def slide_pages(slides: list[Slide], key: str) -> list[Slide]:
    """The slide `key` and the slides that continue it, in order (`_continued` shares a long slide's facts out)."""
    keys = {_page_key(key, i) for i in range(len(slides))}
    return [slide for slide in slides if slide.key in keys]


def case_caption(number: int, case: dict) -> str:
    """A failure case told without its file name: "Case 2: truly DME, the model said NORMAL (probability 26%)"."""
    return (f"Case {number}: truly {case['true']}, the model said {case['predicted']} "
            f"(probability {_num(case.get('probability')):.0%}).")


def _dataset_name(name) -> str:
    """A dataset's registered name for a slide; a name that is a path (a folder typed in full) is not shown."""
    text = str(name or "").strip()
    return "the training set" if not text or "/" in text or "\\" in text else f"\u201c{text}\u201d"


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _headline(report: dict, key: str) -> dict | None:
    return next((h for h in report.get("headline") or [] if h.get("key") == key), None)


def _ci(entry: dict | None) -> str:
    if not entry or not informative_bounds(entry.get("low"), entry.get("high")):
        return ""  # no interval, or a zero-width one ("between 100% and 100%" says nothing)
    level = _num(entry.get("confidence") or 0.95)
    return (f" (we are {level:.0%} confident the true value lies between {fmt(entry['low'], entry['kind'])} and "
            f"{fmt(entry['high'], entry['kind'])})")


LAY_MEANINGS = {
    "sensitivity": "The share of scans with urgent disease that the model flags.",
    "urgent_auc": "How well the model ranks a diseased scan above a healthy one: 0.5 is a coin toss, 1 is perfect.",
    "accuracy": "The share of all scans given the right finding.",
}


def _what(report: dict) -> Slide:
    task = report.get("task") or {}
    model = report.get("model") or {}
    test = report.get("test_set") or {}
    counts = test.get("class_counts") or {}
    facts = [Fact(f"The task: {task.get('title') or task.get('name')}.", task.get("description") or ""),
             Fact(f"The model looks at one {task.get('modality') or 'image'} scan and names the most likely of "
                  f"{len(task.get('classes') or [])} findings: {', '.join(task.get('classes') or [])}.",
                  "It gives a probability for each finding; the highest one is its answer.")]
    source = report.get("scores_source") or {}
    if source:  # scores imported from a file: no model here at all
        facts.append(Fact(f"Its scores were imported from the file \u201c{source.get('file_name')}\u201d: the model "
                          "that made them was trained elsewhere, and how is not recorded here.",
                          "A network learns patterns from labelled examples; it should not have seen the test "
                          "images, and only its makers can say whether it did."))
    elif trained_elsewhere(report):  # a model file registered by import-model (ONNX, TorchScript)
        facts.append(Fact(f"It is the model \u201c{model.get('run_name')}\u201d, trained elsewhere; what it was "
                          "trained on is not recorded here.", "A network learns patterns from labelled examples; it "
                          "should not have seen the test images."))
    elif model:
        count = model.get("training_images")
        facts.append(Fact(f"It is {plain_backbone_name(model.get('backbone'))} trained on "
                          + (f"{count} images of " if count is not None else "")
                          + f"{_dataset_name(model.get('training_dataset'))}.",
                          "A network learns patterns from labelled examples; it has not seen the test images."))
    patients = test.get("n_patients")
    facts.append(Fact(f"It was tested on {test.get('n_images')} scans" + (f" from {patients} patients" if patients
                                                                          else "") + ": "
                      + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".",
                      "Each test scan has a known answer (the reference standard) to compare with."))
    if test.get("synthetic"):
        facts.append(Fact("These test images are synthetic: made by a program, not taken from patients.",
                          "The numbers show how the product works, not how a model would do in a clinic."))
    return Slide("what", "What the model does, and on what data", facts)


def _readers(report: dict) -> Slide:
    readers = report.get("readers") or {}
    options = report.get("options") or {}
    if not readers.get("included"):
        return Slide("readers", "The model and the readers",
                     [Fact("No reader comparison: " + str(readers.get("reason") or "no readings are stored") + ".")])
    positive = " or ".join(readers.get("positive") or [])
    model = readers.get("model") or {}
    found = int(model.get("tp") or 0)
    total = found + int(model.get("fn") or 0)
    alarms = int(model.get("fp") or 0)
    negatives = alarms + int(model.get("tn") or 0)
    raised = plural(alarms, "false alarm", "false alarms")
    facts = [Fact(f"The model found {found} of {total} {positive} cases and raised {raised} among {negatives} "
                  "other scans.",
                  f"A scan counts as flagged when the model's probability of {positive} is at least "
                  f"{_num(options.get('threshold')):g}.")]
    for row in readers.get("comparison") or []:
        tp, fn, fp, tn = (int(row.get(k) or 0) for k in ("tp", "fn", "fp", "tn"))
        who = str(row.get("reader_id"))
        raised = plural(fp, "false alarm", "false alarms")
        facts.append(Fact(f"{who} found {tp} of {tp + fn} and raised {raised} among {fp + tn}.",
                          "A simulated reader: answers drawn at random to match a profile, not a real person."
                          if who in set(readers.get("simulated") or []) else "A reader graded the same scans."))
    lr = _num(model.get("lr_positive"))
    if math.isfinite(lr):
        facts.append(Fact(f"LR+ {lr:.1f}: a positive result from the model makes {positive} {lr:.1f} times more "
                          "likely (in odds) than before the scan was read.",
                          "Above 10 is strong evidence; near 1 means the flag tells you little."))
    return Slide("readers", "How it compares with the readers", facts)


def _roc(report: dict) -> Slide | None:
    """The model's ROC curve with every reader on it (the report's own figure, core.report.figures); the model's
    curve alone when no readings are stored; None when the task has no binary view to draw."""
    from core.report.figures import readers as reader_figures
    from core.report.figures import view_roc

    drawn = next((f for f in reader_figures(report) if f.key == "readers_roc"), None)
    if drawn is not None:
        positive = " or ".join((report.get("readers") or {}).get("positive") or [])
        fact = Fact(f"The curve is every balance the model can strike between finding {positive} and raising false "
                    "alarms; each reader is one point, with a cross of 95% intervals.",
                    "Up and to the left is better: a reader above the curve did better than the model at that "
                    "balance, a reader below it worse. The model's own point is the cross on the curve.")
        title = "The model's ROC curve, with the readers on it"
    else:
        drawn = view_roc(report)
        if drawn is None:
            return None
        fact = Fact("The curve is every balance the model can strike between finding disease and raising false "
                    "alarms; the marks are the model's own calls. No reader readings are stored to set beside it.",
                    "Up and to the left is better; the diagonal is a coin toss.")
        title = "The model's ROC curve"
    figure = drawn.figure
    figure.update_layout(height=None, autosize=True, title=None, margin={"t": 10})
    return Slide("roc", title, [fact], figure=figure)


def _cost(report: dict) -> Slide:
    facts = []
    weighted = _headline(report, "weighted_error")
    penalty = (report.get("penalty") or {}).get("name")
    if weighted and weighted.get("value") is not None:
        per_1000 = _num(weighted["value"]) * 1000
        low, high = _num(weighted.get("low")) * 1000, _num(weighted.get("high")) * 1000
        ci = (f" ({_num(weighted.get('confidence') or 0.95):.0%} confident: between {low:,.0f} and {high:,.0f})"
              if informative_bounds(low, high) else "")
        facts.append(Fact(f"Weighted error: about {per_1000:,.0f} penalty points per 1,000 scans read{ci}.",
                          f"Each mistake costs points from the clinic's penalty table (\u201c{penalty}\u201d): "
                          "missing urgent disease costs most. Lower is better; 0 is perfect."))
    decision = report.get("decision") or {}
    if decision.get("included"):
        at = decision.get("at_penalty_threshold") or decision["at_report_threshold"]
        gain = (at["net_benefit"] - max(at["net_benefit_all"], 0.0)) * 1000
        facts.append(Fact(f"Net benefit at the clinic's threshold ({at['threshold']:.2f}): {at['net_benefit']:.3f}, "
                          f"against {at['net_benefit_all']:.3f} for referring everyone and 0 for referring no one.",
                          "Net benefit counts correct referrals minus false ones weighted by how much the clinic "
                          "minds them: per 1,000 scans, the model is worth "
                          f"{gain:+,.0f} correct referrals beyond the best simple policy."))
    if not facts:
        facts.append(Fact("No cost analysis: this report has no penalty matrix or binary view."))
    return Slide("cost", "What it would cost or save at the clinic's threshold", facts)


def _failures(report: dict) -> Slide:
    f = report.get("failures") or {}
    cases = f.get("cases") or []
    if not cases:
        return Slide("failures", "Where it fails", [Fact(str(f.get("reason") or "No misclassified case."))])
    facts = [Fact(f"The model was wrong on {f.get('n_errors')} of {(report.get('evaluation') or {}).get('n_images')} "
                  f"scans. {_COUNT_WORDS.get(len(cases), len(cases))} of them:", f"Chosen by a fixed rule, not by hand: {f.get('rule')}.")]
    return Slide("failures", "Where it fails", facts, cases=cases)


def _unknown(report: dict, shift: dict | None = None) -> Slide:
    """Every caveat of the report's first page (core.report.caveats, the one owner), then the headline intervals
    and the limitations the caveats do not already say."""
    caveats = report_caveats(report, shift)
    facts = [Fact(c.text, c.explanation) for c in caveats]
    for key, meaning in LAY_MEANINGS.items():
        entry = _headline(report, key)
        if entry and entry.get("value") is not None:
            facts.append(Fact(f"{entry['label']} {fmt(entry['value'], entry['kind'])}{_ci(entry)}.",
                              meaning + " The wider the range, the less this test set can tell us."))
    said = " ".join(c.notice for c in caveats).lower()
    limits = [line for line in (report.get("methods") or {}).get("limitations") or []
              if not (("synthetic" in line.lower() and "synthetic" in said)
                      or ("simulated" in line.lower() and "simulated" in said))]
    facts.extend(Fact(str(line)) for line in limits[:2])
    return Slide("unknown", "What is not known", facts[:max(8, len(caveats))])


def build_slides(report: dict, shift: dict | None = None) -> list[Slide]:
    """The story of one model on one test set, in the order a stakeholder hears it. shift: the dataset audit's
    shift section ({"flagged", "reasons"}) of the test set against the training data, when one was run."""
    story = [_what(report), _readers(report), _roc(report), _cost(report), _failures(report), _unknown(report, shift)]
    return [page for slide in story if slide is not None for page in _continued(slide)]
