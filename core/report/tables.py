"""The report's tables as formatted text, from the report dict: one source for the HTML file and the page preview."""

from __future__ import annotations

from core.report.format import Table, cite, plain_value, flat_interval, interval, number, percent
from core.report.model_card import elsewhere_facts, head_fitting

# -- the tables ---------------------------------------------------------------------------------------------
def headline_table(report: dict) -> Table:
    rows = [[h["label"], interval(h, h["kind"]), h.get("method") or "\u2014", h.get("reason") or h.get("note") or ""]
            for h in report.get("headline") or []]
    return Table("headline", "Headline", ["measure", "value", "interval method", "note"], rows)


def model_card_table(report: dict) -> Table | None:
    m = report.get("model") or {}
    elsewhere = elsewhere_facts(report)  # a model or scores from elsewhere: what is known, and what is not
    if elsewhere:
        name = m.get("run_name") or (report.get("scores_source") or {}).get("run_name")
        run = [["Run", f"{plain_value(name)}" + (f" ({plain_value(m.get('run_id'))})" if m.get("run_id") else "")]]
        return Table("model_card", "Model card", ["", "value"], run + [list(fact) for fact in elsewhere],
                     show_header=False)
    if not m:
        return None  # a report built from a bare predictions table has no run to describe
    validation = f"{m.get('validation_metric') or 'metric'} {number(m.get('best_validation_metric'))}" \
        + (f" at epoch {m['best_epoch']}" if m.get("best_epoch") else "")
    training = f"{plain_value(m.get('training_dataset'))}" + (
        f" ({m['training_images']:,} training, {m.get('validation_images') or 0:,} validation images)"
        if isinstance(m.get("training_images"), int) else "")
    rows = [
        ["Run", f"{plain_value(m.get('run_name'))} ({plain_value(m.get('run_id'))})"],
        ["Backbone", plain_value(m.get("backbone"))],
        ["Training mode", {"features": "features (frozen backbone, cached features; the paper's method)",
                           "finetune": "fine-tune"}.get(m.get("mode"), plain_value(m.get("mode")))],
        ["Weights source", plain_value(m.get("weights_source"))],
        ["Head", plain_value(m.get("head"))],
        ["Image size", f"{m['image_size']} px" if m.get("image_size") else "\u2014"],
        *([["Head fitting", fitted]] if (fitted := head_fitting(m)) else [
            ["Epochs", f"{plain_value(m.get('epochs_run'))} run of {plain_value(m.get('epochs'))} planned"
                       + (" (stopped early)" if m.get("stopped_early") else "")],
            ["Optimiser", f"{plain_value(m.get('optimizer'))}, learning rate {plain_value(m.get('learning_rate'))}, "
                          f"batch {plain_value(m.get('batch_size'))}"]]),
        ["Training data", training],
        ["Data limit", plain_value(m.get("data_limit"))],
        ["Class balancing", plain_value(m.get("balancing"))],
        ["Seed", plain_value(m.get("seed"))],
        ["Best validation", validation],
        ["Device", plain_value(m.get("device"))],
    ]
    if m.get("binary_model"):
        rows.insert(5, ["Binary model", plain_value(m.get("binary_model"))])
    if m.get("checkpoint_sha256"):
        rows.append(["Checkpoint SHA-256", str(m["checkpoint_sha256"])[:16] + "\u2026"])
    return Table("model_card", "Model card", ["", "value"], rows, show_header=False)


def test_set_table(report: dict) -> Table:
    t = report.get("test_set") or {}
    rows = [["Name", plain_value(t.get("name"))], ["Id", plain_value(t.get("id"))],
            ["Images evaluated", plain_value(t.get("n_images"))],
            ["Patients", plain_value(t.get("n_patients")) if t.get("n_patients") else "no patient ids"],
            ["Synthetic", "yes: procedurally generated images, no real patient" if t.get("synthetic") else "no"]]
    if t.get("excluded_images"):
        rows.append(["Images left out (unreadable)", plain_value(t.get("excluded_images"))])
    if t.get("fingerprint"):
        rows.append(["Content fingerprint", str(t["fingerprint"])[:16] + "\u2026"])
    return Table("test_set", "Test set", ["", "value"], rows, show_header=False)


def class_counts_table(report: dict) -> Table | None:
    evaluation = report.get("evaluation") or {}
    counts = evaluation.get("class_counts")
    if not counts:
        return None
    prevalence = evaluation.get("prevalence") or {}
    levels = (report.get("task") or {}).get("referral_levels") or {}
    rows = [[name, f"{int(n):,}", percent(prevalence.get(name)), levels.get(name, "\u2014")]
            for name, n in counts.items()]
    return Table("class_counts", "Images per class", ["class", "images", "share", "referral level"], rows,
                 numeric_columns=[1, 2])


def per_class_table(report: dict) -> Table | None:
    per_class = (report.get("evaluation") or {}).get("per_class")
    if not per_class:
        return None
    notes: list[str] = []
    rows = []
    for name, c in per_class.items():
        rows.append([name, f"{int(c.get('n') or 0):,}"]
                    + [interval(c.get(k), "proportion", notes) for k in ("sensitivity", "specificity", "ppv", "npv")]
                    + [interval(c.get("auc"), "auc", notes)])
    return Table("per_class", "Per class (this class vs all others; calls = most probable class)",
                 ["class", "images", "sensitivity", "specificity", "PPV", "NPV", "AUC"], rows, footnotes=notes,
                 numeric_columns=[1])


def per_label_table(report: dict) -> Table | None:
    """Multi-label tasks: each label is its own yes/no question."""
    per_label = ((report.get("evaluation") or {}).get("multilabel") or {}).get("per_label")
    if not per_label:
        return None
    notes: list[str] = []
    rows = []
    for name, entry in per_label.items():
        point = entry.get("at_threshold") or {}
        rows.append([name, percent(entry.get("prevalence")), interval(entry.get("auc"), "auc", notes),
                     interval(point.get("sensitivity"), "proportion", notes),
                     interval(point.get("specificity"), "proportion", notes)])
    threshold = number((report.get("options") or {}).get("threshold"), 2)
    return Table("per_label", f"Per label (called present when its probability is at least {threshold})",
                 ["label", "prevalence", "AUC", "sensitivity", "specificity"], rows, footnotes=notes)


def binary_views_table(report: dict) -> Table | None:
    views = (report.get("evaluation") or {}).get("binary_views")
    if not views:
        return None
    notes: list[str] = []
    rows = []
    for v in views:
        calib = v.get("calibration") or {}
        auc = interval(v.get("auc"), "auc", notes) if "auc" in v else "n/a" + cite(v.get("reason", ""), notes)
        rows.append([v["name"], f"{v.get('n_positive', 0):,} of {v.get('n', 0):,}", auc,
                     number(calib.get("ece")), number(calib.get("brier"))])
    return Table("binary_views", "Binary views (score = summed probability of the positive classes)",
                 ["view", "positive images", "AUC", "ECE", "Brier"], rows, footnotes=notes,
                 numeric_columns=[1, 3, 4])


_POINT_NAMES = {"threshold": "score threshold", "youden": "Youden's J", "sensitivity_0_95": "sensitivity \u2265 95%",
                "specificity_0_95": "specificity \u2265 95%", "model_calls": "model's class calls"}


def operating_points_table(report: dict) -> Table | None:
    evaluation = report.get("evaluation") or {}
    default = ((report.get("task") or {}).get("binary_views") or [{}])[0].get("name")
    view = next((v for v in evaluation.get("binary_views") or [] if v.get("name") == default), None)
    if not view or "operating_points" not in view:
        return None
    notes: list[str] = []
    rows = []
    for key, p in view["operating_points"].items():
        threshold = "\u2014" if "threshold" not in p else number(p["threshold"])
        rows.append([_POINT_NAMES.get(key, key), threshold]
                    + [interval(p.get(k), "proportion", notes) for k in ("sensitivity", "specificity", "ppv", "npv")]
                    + [interval(p.get(k), "ratio", notes) for k in ("lr_positive", "lr_negative")])
    return Table("operating_points", f"Operating points: {view['name']}",
                 ["rule", "threshold", "sensitivity", "specificity", "PPV", "NPV", "LR+", "LR-"], rows,
                 "A threshold of \u221e calls every case negative.", footnotes=notes, numeric_columns=[1])


def confusion_table(report: dict) -> Table | None:
    confusion = (report.get("evaluation") or {}).get("confusion")
    if not confusion:
        return None
    classes = confusion["classes"]
    rows = [[c] + [f"{int(n):,}" for n in row] + [f"{int(sum(row)):,}"]
            for c, row in zip(classes, confusion["counts"])]
    return Table("confusion", "Confusion matrix (rows = true class, columns = the model's call)",
                 ["true \\ called"] + [f"{c}" for c in classes] + ["total"], rows,
                 numeric_columns=list(range(1, len(classes) + 2)))


def summary_statistics_table(report: dict) -> Table | None:
    """Threshold-free summaries and their bootstrap intervals."""
    evaluation = report.get("evaluation") or {}
    if "accuracy" not in evaluation:
        return None
    notes: list[str] = []
    intervals = (evaluation.get("bootstrap") or {}).get("intervals") or {}
    calibration = evaluation.get("calibration") or {}
    rows = [
        ["Accuracy", percent((evaluation.get("accuracy") or {}).get("value")),
         interval(intervals.get("accuracy"), "proportion", notes)],
        ["Balanced accuracy", percent(evaluation.get("balanced_accuracy")),
         interval(intervals.get("balanced_accuracy"), "proportion", notes)],
        ["Macro AUC (one-vs-rest)", number(evaluation.get("macro_auc")),
         interval(intervals.get("macro_auc"), "auc", notes)],
        ["Prevalence-weighted AUC", number(evaluation.get("weighted_auc")),
         interval(intervals.get("weighted_auc"), "auc", notes)],
        ["Cross-entropy (log loss)", number(evaluation.get("cross_entropy")), "\u2014"],
        ["Expected calibration error (top class)", number(calibration.get("ece")), "\u2014"],
        ["Brier score (multi-class)", number(calibration.get("brier")), "\u2014"],
    ]
    boot = evaluation.get("bootstrap") or {}
    note = (f"Bootstrap: {boot.get('resamples', 0):,} resamples of {boot.get('unit', 'images')}, seed "
            f"{boot.get('seed', 0)}." if boot.get("resamples") else "No bootstrap intervals (0 resamples).")
    return Table("summary_statistics", "Summary statistics", ["measure", "value", "bootstrap interval"], rows, note,
                 footnotes=notes, numeric_columns=[1])


def tiers_table(report: dict) -> Table | None:
    tiers = ((report.get("evaluation") or {}).get("referral") or {}).get("tiers")
    if not tiers:
        return None
    names = tiers["classes"]
    rows = [[name] + [f"{int(n):,}" for n in row] + [f"{int(sum(row)):,}"] for name, row in zip(names, tiers["counts"])]
    return Table("tiers", "Referral tiers (rows = true tier, columns = tier of the model's call)",
                 ["true \\ called"] + list(names) + ["total"], rows,
                 numeric_columns=list(range(1, len(names) + 2)))


def penalty_matrix_table(report: dict) -> Table | None:
    penalty = report.get("penalty")
    if not penalty or penalty.get("matrix") is None:
        return None
    classes = (report.get("task") or {}).get("classes") or []
    rows = [[c] + [number(x, 2) for x in row] for c, row in zip(classes, penalty["matrix"])]
    header = ["true \\ called"] + list(classes)
    note = ""
    if penalty.get("referral_cost") is not None:  # the price of the third outcome, per true class
        rows = [row + [number(cost, 2)] for row, cost in zip(rows, penalty["referral_cost"])]
        header.append("referred to a reader")
        note = f"Referral cost per true class: {penalty.get('referral_cost_note') or 'as set'}."
    return Table("penalty_matrix", f"Penalty matrix: {penalty.get('name')}", header, rows, note,
                 numeric_columns=list(range(1, len(header))))


def penalty_rule_sentence(body: dict) -> str:
    """What the penalty-minimising rule does to the weighted error against argmax, with the right verb: 'lowers it
    by 0.087' or 'raises it by 0.087' (never 'lowers it by -0.087')."""
    change = float(body.get("improvement") or 0.0)  # argmax minus the rule's: positive = the rule is better
    calls = f"The penalty-minimising rule changes {int(body.get('changed_calls') or 0):,} calls"
    if body.get("improvement") is None or number(abs(change)) == number(0.0):
        return f"{calls} and leaves the weighted error of the most probable class unchanged."
    verb = "lowers" if change > 0 else "raises"
    return (f"{calls} and {verb} the weighted error of the most probable class by {number(abs(change))} per image "
            f"({number(body['argmax']['weighted_error'])} to {number(body['min_penalty']['weighted_error'])}).")


def penalty_comparison_table(report: dict) -> Table | None:
    body = (report.get("evaluation") or {}).get("penalty")
    if not body:
        return None
    notes: list[str] = []
    intervals = ((report.get("evaluation") or {}).get("bootstrap") or {}).get("intervals") or {}
    # Each interval sits beside the value it was resampled from: the bootstrap's "weighted_error" is that of the
    # model's calls (its `predicted` column, at its operating point), not of argmax.
    rows = [["The model's calls (its operating point)", number(body.get("predicted_calls_weighted_error")),
             interval(intervals.get("weighted_error"), "number", notes)],
            ["Most probable class (argmax)", number(body["argmax"]["weighted_error"]), "not resampled"],
            ["Penalty-minimising rule", number(body["min_penalty"]["weighted_error"]),
             interval(intervals.get("weighted_error_min_penalty"), "number", notes)]]
    note = penalty_rule_sentence(body)
    return Table("penalty_comparison", "Weighted error by decision rule",
                 ["decision rule", "weighted error", "bootstrap interval"], rows, note, footnotes=notes,
                 numeric_columns=[1])


def _reader_rates(row: dict, notes: list[str]) -> list[str]:
    return [flat_interval(row, name, kind, notes) for name, kind in
            (("sensitivity", "proportion"), ("specificity", "proportion"), ("lr_positive", "ratio"),
             ("lr_negative", "ratio"))]


def readers_table(report: dict) -> Table | None:
    readers = report.get("readers") or {}
    if not readers.get("included"):
        return None
    notes: list[str] = []
    model = readers.get("model") or {}
    same = {str(r["reader_id"]): r for r in readers.get("weighted_error") or []}
    rows = [["model (all images)", "model", f"{int(model.get('n_graded') or 0):,}", *_reader_rates(model, notes),
             number(model.get("weighted_error")), "\u2014"]]
    for row in readers.get("comparison") or []:
        reader = str(row["reader_id"])
        rows.append([reader, str(row.get("kind", "")), f"{int(row.get('n_graded') or 0):,}",
                     *_reader_rates(row, notes), number(row.get("weighted_error")),
                     number((same.get(reader) or {}).get("model_weighted_error_same_cases"))])
    note = (f"Binary view: {readers.get('view')}; the model is positive when its score is at least "
            f"{number(readers.get('threshold'), 2)}. Weighted error uses the report's penalty matrix; the last "
            "column is the model on exactly the images that reader graded.")
    return Table("readers", "Readers and the model", ["who", "kind", "images", "sensitivity", "specificity", "LR+",
                                                      "LR-", "weighted error", "model, same images"], rows, note,
                 footnotes=notes, numeric_columns=[2, 7, 8])


def paired_table(report: dict) -> Table | None:
    readers = report.get("readers") or {}
    if not readers.get("included"):
        return None
    notes: list[str] = []
    rows = []
    for row in readers.get("comparison") or []:
        if row.get("problem"):
            rows.append([str(row["reader_id"]), "\u2014", "\u2014", "\u2014", "\u2014",
                         "n/a" + cite(str(row["problem"]), notes)])
            continue
        rows.append([str(row["reader_id"]), f"{int(row.get('n_shared') or 0):,}",
                     flat_interval(row, "sensitivity_difference", "proportion", notes),
                     flat_interval(row, "specificity_difference", "proportion", notes),
                     number(row.get("mcnemar_exact_p")), flat_interval(row, "kappa", "number", notes)])
    method = next((r.get("difference_method") for r in readers.get("comparison") or [] if r.get("difference_method")),
                  "")
    return Table("paired", "Paired comparisons on the same images (model minus reader)",
                 ["reader", "shared images", "sensitivity difference", "specificity difference", "McNemar exact p",
                  "Cohen's kappa vs model"], rows, f"Differences: {method}." if method else "", footnotes=notes,
                 numeric_columns=[1, 4])


# (anchor, heading) of the report's sections in reading order, and the tables each one shows.
SECTIONS = (("summary", "Summary"), ("model", "Model card"), ("test-set", "Test set"),
            ("discrimination", "Discrimination: ROC and per-class rates"),
            ("subgroups", "Subgroups: who does the model fail?"), ("confusion", "Confusion matrix"),
            ("calibration", "Calibration"), ("tiers", "Referral tiers"), ("penalties", "Penalties"),
            ("readers", "Readers vs the model"), ("decision", "Decision curve: net benefit"),
            ("methods", "Methods and limitations"), ("checklist", "Reporting checklist (STARD 2015, CLAIM 2024)"))
SECTION_TABLES = {
    "summary": ("headline", "referrals"), "model": ("model_card",), "test-set": ("test_set", "class_counts"),
    "discrimination": ("per_class", "per_label", "operating_points", "binary_views", "summary_statistics"),
    "subgroups": (), "confusion": ("confusion",), "calibration": (), "tiers": ("tiers",),
    "penalties": ("penalty_matrix", "penalty_comparison"), "readers": ("readers", "paired"), "methods": (),
    "decision": ("decision",), "checklist": ("checklist",),
}
_PENALTY_TABLES = {"penalty_matrix", "penalty_comparison"}


def all_tables(report: dict) -> dict[str, Table]:
    """Every table that applies to this report, by key (penalty tables only when the report includes them)."""
    builders = (headline_table, model_card_table, test_set_table, class_counts_table, summary_statistics_table,
                per_class_table, per_label_table, binary_views_table, operating_points_table, confusion_table,
                tiers_table, penalty_matrix_table, penalty_comparison_table, readers_table, paired_table,
                decision_table, referrals_table, checklist_table)
    include_penalties = (report.get("options") or {}).get("include_penalties", True)
    tables = {}
    for build in builders:
        table = build(report)
        if table is not None and (include_penalties or table.key not in _PENALTY_TABLES):
            tables[table.key] = table
    return tables


def referrals_table(report: dict) -> Table | None:
    """Refer when unsure: the band, how many were referred, and the error among the calls made vs overall."""
    body = report.get("referrals") or {}
    if not body.get("included"):
        return None
    notes: list[str] = []
    band = body.get("band") or {}
    rows = [["Images referred to a reader", f"{int(body['n_referred']):,} of {int(body['n']):,}", "\u2014"],
            ["Share called by the model (coverage)", percent((body.get("coverage") or {}).get("value")),
             interval(body.get("coverage"), "proportion", notes)],
            [f"Error among the calls made ({body['view']})", percent((body.get("error_among_calls") or {}).get("value")),
             interval(body.get("error_among_calls"), "proportion", notes)],
            [f"Error over every image ({body['view']})", percent((body.get("error_overall") or {}).get("value")),
             interval(body.get("error_overall"), "proportion", notes)]]
    if band:
        rows.append(["Stated target (error among calls)", f"at most {percent(band.get('target_error'))} with "
                     f"{percent(band.get('confidence'))} confidence", "\u2014"])
        note = (f"Band: scores from {number(band.get('low'), 3)} to {number(band.get('high'), 3)} on "
                f"\u201c{body['view']}\u201d are referred; calibrated on {int(band.get('n_calibration') or 0):,} cases "
                f"({band.get('source')}) by {band.get('method')}. Assumes {body.get('assumption')}.")
    else:
        note = "The predictions record referrals but not the band that made them."
    return Table("referrals", "Refer when unsure", ["measure", "value", "interval"], rows, note, footnotes=notes,
                 numeric_columns=[1])


def decision_table(report: dict) -> Table | None:
    d = report.get("decision") or {}
    if not d.get("included"):
        return None
    rows = []
    for label, at in (("report threshold", d.get("at_report_threshold")),
                      ("threshold the penalty matrix implies", d.get("at_penalty_threshold"))):
        if at:
            rows.append([label, number(at["threshold"], 3), number(at["net_benefit"], 3),
                         number(at["net_benefit_all"], 3), "0", number(at["net_interventions_avoided"], 3)])
    return Table("decision", "Net benefit", ["where", "threshold", "model", "treat all", "treat none",
                                             "net interventions avoided per patient"], rows,
                 note=f"View \u201c{d['view']}\u201d, prevalence {percent(d['prevalence'])} of {d['n']} images; "
                      f"{d['method']}.", numeric_columns=[1, 2, 3, 4, 5])


def checklist_table(report: dict) -> Table:
    from core.report.checklist import CLAIM_NUMBERING_NOTE, fill_checklist

    rows = [[f"{r['standard']} {r['item']}", r["topic"], r["answer"]] for r in fill_checklist(report)]
    return Table("checklist", "Reporting checklist", ["item", "topic", "answer from this workspace"], rows,
                 note=CLAIM_NUMBERING_NOTE)


def section_tables(report: dict) -> dict[str, list[Table]]:
    """The tables of each section (anchor -> tables), in reading order."""
    from core.report.subgroups import subgroup_report_tables

    tables = all_tables(report)
    out = {anchor: [tables[k] for k in SECTION_TABLES.get(anchor, ()) if k in tables] for anchor, _ in SECTIONS}
    out["subgroups"] = subgroup_report_tables(report)  # one per subgroup column the test set has
    return out
