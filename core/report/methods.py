"""The report's methods paragraph and limitations, written from the methods the numbers actually carry."""

from __future__ import annotations

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
    paragraphs.append(
        f"All numbers come from the model's stored predictions on the test set ({units}) and, where shown, the "
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
    return {"interval_methods": methods, "paragraphs": paragraphs, "limitations": limitations(report)}


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
