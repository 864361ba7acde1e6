"""The report's methods paragraph and limitations, written from the methods the numbers actually carry."""

from __future__ import annotations

from core.report.model_card import TRAINED_ELSEWHERE, elsewhere_facts, head_fitting, trained_elsewhere

# Below this many test images (or cases of a class) intervals are wide enough that the report should say so.
SMALL_TEST_SET = 200
LR_METHOD_TEXT = {
    "log": "Simel's log method (1991)",
    "koopman": "Koopman's score interval (1984)",
    "adjusted_log": "the log method with 0.5 added to each count and each total (Fagerland, Lydersen & Laake 2015)",
}


# Keys under which core.metrics / core.readers name the method behind an interval.
METHOD_KEYS = ("method", "ci_method", "lr_ci_method", "difference_method", "kappa_method")
# PPV/NPV re-computed at other prevalences name each prevalence; one line says what they all are.
_BAYES_PREFIX = "Bayes at prevalence"


def interval_methods(obj) -> list[str]:
    """Every distinct interval method named in a (nested) result, sorted: the methods the numbers used."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in METHOD_KEYS:
                method = node.get(key)
                if isinstance(method, str) and method:
                    found.add("Bayes' theorem from the likelihood ratios (PPV and NPV at other prevalences)"
                              if method.startswith(_BAYES_PREFIX) else method)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj)
    return sorted(found, key=str.lower)


def _used(methods: list[str], word: str) -> bool:
    return any(word.lower() in m.lower() for m in methods)


def methods_section(report: dict) -> dict:
    """Paragraphs saying how each number was computed (from the methods found in the results) and the limits."""
    evaluation = report.get("evaluation") or {}
    options = report.get("options") or {}
    readers = report.get("readers") or {}
    methods = interval_methods({"evaluation": evaluation, "readers": readers})
    level = float(options.get("confidence") or evaluation.get("confidence") or 0.95)
    boot = evaluation.get("bootstrap") or {}
    n_images = evaluation.get("n_images") or 0
    n_patients = evaluation.get("n_patients")
    paragraphs = []
    units = f"{n_images:,} images" + (f" from {n_patients:,} patients" if n_patients else "")
    scores = "the scores imported from a file" if report.get("scores_source") else "the model's stored predictions"
    paragraphs.append(
        f"All numbers come from {scores} on the test set ({units}) and, where shown, the "
        "readers' stored readings; they are computed by the product's statistics package and copied into this "
        f"report unchanged. Intervals are two-sided {level:.0%} confidence intervals.")
    parts = []
    if _used(methods, "wilson"):
        parts.append("proportions (accuracy, sensitivity, specificity, predictive values) use the Wilson score "
                     "interval")
    if _used(methods, "delong"):
        parts.append("areas under the ROC curve use DeLong's variance of the Mann-Whitney statistic")
    if _used(methods, "simel") or _used(methods, "koopman") or _used(methods, "adjusted log"):
        lr = LR_METHOD_TEXT.get(options.get("lr_method") or "log", "Simel's log method (1991)")
        parts.append(f"likelihood ratios use {lr}; where the log interval is undefined (a zero cell) the report "
                     "says so, and Koopman's score interval (1984) is the alternative that stays defined")
    if parts:
        paragraphs.append("Interval methods: " + "; ".join(parts) + ".")
    resamples = int(boot.get("resamples") or 0)
    if resamples:
        unit = "patients" if boot.get("unit") == "patients" else "images"
        paragraphs.append(
            f"Accuracy, balanced accuracy, weighted error and macro AUC also carry percentile bootstrap intervals "
            f"from {resamples:,} resamples of {unit} (seed {boot.get('seed', 0)})"
            + (", so that all images of one patient stay together in each resample." if unit == "patients"
               else "; the test set has no patient ids, so images are resampled one by one."))
    else:
        paragraphs.append("No bootstrap was run (0 resamples), so the weighted error has no interval.")
    penalty = report.get("penalty") or {}
    if penalty:
        rule = (" The penalty-minimising rule calls for each image the class with the lowest expected penalty "
                "under the model's probabilities." if options.get("include_penalties", True) else "")
        paragraphs.append(
            f"Weighted error is the mean penalty per image with the penalty matrix \u201c{penalty.get('name')}\u201d "
            f"(rows = true class, columns = the call), as in Kermany et al. (2018).{rule} Calibration is summarised "
            "by the expected calibration error over 10 equal-width bins of the top-class probability and by the "
            "multi-class Brier score.")
    if readers.get("included"):
        paragraphs.append(
            f"Readers are compared with the model in the binary view \u201c{readers.get('view')}\u201d; the model is "
            f"positive when its score is at least {float(readers.get('threshold', 0.5)):g}. Each reader is analysed "
            "on the images they graded; the model's weighted error is also given on exactly those images.")
    return {"interval_methods": methods, "paragraphs": paragraphs, "limitations": limitations(report),
            "paste": paste_ready(report, methods), "references": references(methods, report)}


REFERENCES = {
    "wilson": "Wilson EB. Probable inference, the law of succession, and statistical inference. J Am Stat Assoc "
              "1927;22:209-212.",
    "delong": "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated receiver "
              "operating characteristic curves: a nonparametric approach. Biometrics 1988;44:837-845.",
    "simel": "Simel DL, Samsa GP, Matchar DB. Likelihood ratios with confidence: sample size estimation for "
             "diagnostic test studies. J Clin Epidemiol 1991;44:763-770.",
    "koopman": "Koopman PAR. Confidence intervals for the ratio of two binomial proportions. Biometrics "
               "1984;40:513-517.",
    "bootstrap": "Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall; 1993.",
    "kermany": "Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases by "
               "image-based deep learning. Cell 2018;172:1122-1131.",
    "vickers": "Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction models. "
               "Med Decis Making 2006;26:565-574.",
    "mcnemar": "McNemar Q. Note on the sampling error of the difference between correlated proportions or "
               "percentages. Psychometrika 1947;12:153-157.",
    "obuchowski": "Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers and "
                  "multiple tests: an ANOVA approach with dependent observations. Commun Stat Simul Comput "
                  "1995;24:285-308.",
    "stard": "Bossuyt PM, Reitsma JB, Bruns DE, et al. STARD 2015: an updated list of essential items for reporting "
             "diagnostic accuracy studies. BMJ 2015;351:h5527.",
    "claim": "Tejani AS, Klontzas ME, Gatti AA, et al. Checklist for Artificial Intelligence in Medical Imaging "
             "(CLAIM): 2024 update. Radiol Artif Intell 2024;6:e240300.",
}


def references(methods: list[str], report: dict) -> list[str]:
    """The references of the methods this report used (and the reporting standards its checklist follows)."""
    keys = [k for k in ("wilson", "delong", "simel", "koopman", "bootstrap") if _used(methods, k)]
    if (report.get("readers") or {}).get("included"):
        keys.append("mcnemar")
    if report.get("penalty"):
        keys.append("kermany")
    if (report.get("decision") or {}).get("included"):
        keys.append("vickers")
    if (report.get("mrmc") or {}).get("included"):
        keys.append("obuchowski")
    return [REFERENCES[k] for k in keys + ["stard", "claim"]]


def paste_ready(report: dict, methods: list[str]) -> str:
    """One paragraph for a paper's methods section, written from the run and the statistics actually used
    (`methods`: interval_methods of the report's results)."""
    model = report.get("model") or {}
    test_set = report.get("test_set") or {}
    options = report.get("options") or {}
    evaluation = report.get("evaluation") or {}
    task = report.get("task") or {}
    level = float(options.get("confidence") or 0.95)
    out = []
    if trained_elsewhere(report):
        out.append(_elsewhere_paste(report))
    elif model:
        out.append(f"A {model.get('backbone')} image classifier ({model.get('mode')} mode, {model.get('head')} head, "
                   f"weights: {model.get('weights_source')}, input {model.get('image_size')} px, seed "
                   f"{model.get('seed')}) was trained on “{model.get('training_dataset')}” "
                   f"({model.get('training_images')} training and {model.get('validation_images')} validation "
                   f"images)" + (f"; its new head: {fitted}." if (fitted := head_fitting(model)) else
                                 f" and selected by validation {model.get('validation_metric')}."))
    patients = evaluation.get("n_patients")
    out.append(f"It was evaluated on the test set “{test_set.get('name')}” ({evaluation.get('n_images')} images"
               + (f" from {patients} patients" if patients else "") + f") for the task "
               f"“{task.get('title') or task.get('name')}”"
               + (", whose images are synthetic" if test_set.get("synthetic") else "") + ".")
    out.append(f"Binary calls used a score threshold of {float(options.get('threshold', 0.5)):g}.")
    stats = []
    if _used(methods, "wilson"):
        stats.append("Wilson score intervals for proportions (1927)")
    if _used(methods, "delong"):
        stats.append("DeLong's method for the area under the ROC curve (1988)")
    if _used(methods, "simel") or _used(methods, "koopman"):
        stats.append(f"{LR_METHOD_TEXT.get(options.get('lr_method') or 'log')} for likelihood ratios")
    boot = evaluation.get("bootstrap") or {}
    if int(boot.get("resamples") or 0):
        stats.append(f"percentile bootstrap intervals from {int(boot['resamples'])} resamples of "
                     f"{'patients' if boot.get('unit') == 'patients' else 'images'} (seed {boot.get('seed', 0)})")
    if stats:
        out.append(f"Two-sided {level:.0%} confidence intervals were computed with " + ", ".join(stats) + ".")
    penalty = report.get("penalty") or {}
    if penalty:
        out.append(f"Weighted error is the mean penalty per image under the penalty matrix “{penalty.get('name')}"
                   "” (Kermany et al. 2018).")
    decision = report.get("decision") or {}
    if decision.get("included"):
        at = decision["at_report_threshold"]
        out.append(f"Decision-curve analysis (Vickers & Elkin 2006) in the view “{decision['view']}” gave a "
                   f"net benefit of {at['net_benefit']:.3f} at threshold {at['threshold']:g}, against "
                   f"{at['net_benefit_all']:.3f} for treating all and 0 for treating none.")
    readers = report.get("readers") or {}
    if readers.get("included"):
        simulated = len(readers.get("simulated") or [])
        out.append(f"{len(readers.get('readers') or [])} readers ({simulated} simulated) graded the same images; the "
                   "model was compared with each reader on the images that reader graded, with McNemar's test on "
                   "paired correctness.")
    mrmc = report.get("mrmc") or {}
    if mrmc.get("included"):
        out.append(str(mrmc.get("summary") or ""))
    out.append("Reporting follows STARD 2015 and CLAIM 2024.")
    return " ".join(p for p in out if p)


def _elsewhere_paste(report: dict) -> str:
    """The methods paragraph's first sentences for a model trained elsewhere: what its card or its scores' file
    says (model_card.elsewhere_facts), and that its training is not recorded here."""
    facts = dict(elsewhere_facts(report))
    not_here = f"Its training data, hyperparameters, seed and model selection \u2014 {TRAINED_ELSEWHERE}."
    if report.get("scores_source"):
        how = f"; scores read as {facts['Scores read as']}" if facts.get("Scores read as") else ""
        return (f"Scores from an image classifier trained elsewhere were imported from the file "
                f"{facts.get('Scores file')} (SHA-256 {facts.get('File SHA-256')}; imported "
                f"{facts.get('Imported')}{how}). " + not_here.replace("Its training", "The model's training"))
    card = [f"{what.removesuffix(' (its card)').lower()} {value}" for what, value in facts.items()
            if what.endswith("(its card)")]
    if facts.get("Classes, in output order"):
        card.append(f"classes in output order {facts['Classes, in output order']}")
    if facts.get("Output"):
        card.append(f"output {facts['Output']}")
    file = ", ".join(part for part in (facts.get("Model file"), f"SHA-256 {facts['File SHA-256']}"
                                       if facts.get("File SHA-256") else "",
                                       f"registered {facts['Registered']}" if facts.get("Registered") else "") if part)
    return ("An image classifier trained elsewhere" + (f" ({file})" if file else "")
            + (f" was run as the model card its user supplied states: {'; '.join(card)}." if card
               else " was run as supplied.") + f" {not_here}")


def limitations(report: dict) -> list[str]:
    """What the numbers cannot show, specific to this report's data where possible."""
    evaluation = report.get("evaluation") or {}
    test_set = report.get("test_set") or {}
    readers = report.get("readers") or {}
    model = report.get("model") or {}
    out = []
    if test_set.get("synthetic"):
        out.append("The test images are synthetic (procedurally generated, no real patient): the numbers "
                   "demonstrate the product, not clinical performance.")
    if model.get("training_dataset_synthetic"):
        out.append("The model was trained on synthetic images and is not meant for real scans.")
    if trained_elsewhere(report):
        out.append("The model was trained elsewhere: its training data and procedure are not recorded here, so "
                   "whether any test image (or patient) was among its training images cannot be checked.")
    if readers.get("simulated"):
        out.append("Some readers are SIMULATED (made-up answers drawn to match stated profiles); comparisons with "
                   "them illustrate the method, not how clinicians perform.")
    n_images = evaluation.get("n_images") or 0
    if n_images < SMALL_TEST_SET:
        out.append(f"The test set is small ({n_images:,} images): intervals are wide and small differences "
                   "between models or readers are not meaningful.")
    if evaluation.get("n_patients") is None:
        out.append("The test set has no patient ids, so images are treated as independent; if one patient "
                   "contributes several images, the intervals are too narrow.")
    out.append("This is a retrospective evaluation on one test set. Performance can differ with another "
               "population, prevalence, imaging device or protocol; the operating threshold and penalty matrix "
               "were set by the user, not validated prospectively.")
    out.append("The model is not a medical device and its output is not a diagnosis.")
    return out
