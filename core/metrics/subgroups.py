"""Who does the model fail? Per-subgroup AUC, sensitivity, specificity and weighted error, each with its interval,
the gap of each subgroup to the rest of the test set, and a test of heterogeneity across the subgroups.

Pure statistics over arrays. The methods are those of the headline numbers (core.metrics.headline): AUC with
DeLong's interval (core.metrics.roc), sensitivity and specificity at the model's calls with Wilson intervals
(core.metrics.diagnostic), weighted error with a percentile bootstrap resampling patients. A subgroup against the
rest of the test set: the AUC difference of two independent samples (DeLong variances add; z test), the difference
of two independent proportions (Newcombe's hybrid score interval; Pearson's chi-square test, Fisher's exact test
when an expected count is under 5). Across all subgroups of one column: a chi-square test of equal AUCs
(inverse-variance weighted, k - 1 degrees of freedom) and a chi-square test of independence of the k x 2 table
for sensitivity and specificity. The per-subgroup p-values are Holm-adjusted over the subgroups of one column
(statsmodels' multipletests), and the correction is stated with them. A subgroup with fewer than SMALL_GROUP
positive or negative cases is reported with its intervals and the `small` flag: never hidden, never singled out.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from core.errors import InputError
from core.metrics.diagnostic import counts_from_labels, diagnostic_metrics
from core.metrics.headline import HEADLINE_RESAMPLES, HEADLINE_SEED, weighted_error
from core.metrics.intervals import Interval, check_confidence, normal_quantile
from core.metrics.roc import AucEstimate, as_binary_truth, as_scores, roc_auc

# A subgroup with fewer positive (or negative) cases than this is flagged `small` (the rule).
SMALL_GROUP = 20
# How a missing subgroup value is named: its cases stay in the table as their own group.
MISSING_VALUE = "(missing)"
# A numeric column with more distinct values than this is cut into quartiles (age, image width...).
MAX_LEVELS = 8
QUANTILE_BINS = 4
CORRECTION = "Holm"
CORRECTION_TEXT = ("p-values of a subgroup against the rest are Holm-adjusted over the subgroups of this column "
                   "(family-wise error rate); the heterogeneity tests are one test per column, unadjusted")
AUC_GAP_METHOD = "DeLong, two independent samples"
PROPORTION_GAP_METHOD = "Newcombe hybrid score (two independent proportions)"


@dataclass(frozen=True)
class GroupTest:
    """A test of one statistic: p-value (two-sided), the method, and `reason` when it could not be computed."""

    statistic: float
    p_value: float
    method: str
    df: int | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _no_test(method: str, reason: str) -> GroupTest:
    return GroupTest(math.nan, math.nan, method, reason=reason)


@dataclass(frozen=True)
class SubgroupRow:
    """One subgroup: its counts, its estimates with intervals, and its gap to the rest of the test set."""

    value: str
    n: int
    n_positive: int
    n_negative: int
    auc: AucEstimate
    sensitivity: Interval
    specificity: Interval
    weighted_error: Interval | None
    auc_gap: Interval
    sensitivity_gap: Interval
    specificity_gap: Interval
    auc_test: GroupTest
    sensitivity_test: GroupTest
    specificity_test: GroupTest
    auc_p_adjusted: float = math.nan
    sensitivity_p_adjusted: float = math.nan
    specificity_p_adjusted: float = math.nan
    small: bool = False
    n_patients: int | None = None

    def to_dict(self) -> dict:
        out = {"value": self.value, "n": self.n, "n_positive": self.n_positive, "n_negative": self.n_negative,
               "n_patients": self.n_patients, "small": self.small}
        for name in ("auc", "sensitivity", "specificity"):
            out[name] = getattr(self, name).to_dict()
            out[f"{name}_gap"] = getattr(self, f"{name}_gap").to_dict()
            out[f"{name}_test"] = getattr(self, f"{name}_test").to_dict()
            out[f"{name}_p_adjusted"] = getattr(self, f"{name}_p_adjusted")
        out["weighted_error"] = self.weighted_error.to_dict() if self.weighted_error is not None else None
        return out


@dataclass(frozen=True)
class SubgroupTable:
    """The subgroups of one column, the whole test set's estimates, and the heterogeneity tests across groups."""

    column: str
    rows: tuple[SubgroupRow, ...]
    overall_auc: AucEstimate
    overall_sensitivity: Interval
    overall_specificity: Interval
    overall_weighted_error: Interval | None
    heterogeneity: dict[str, GroupTest]
    correction: str = CORRECTION
    correction_text: str = CORRECTION_TEXT
    small_group: int = SMALL_GROUP
    binned: str = ""
    confidence: float = 0.95
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"column": self.column, "rows": [r.to_dict() for r in self.rows],
                "overall": {"auc": self.overall_auc.to_dict(), "sensitivity": self.overall_sensitivity.to_dict(),
                            "specificity": self.overall_specificity.to_dict(),
                            "weighted_error": (self.overall_weighted_error.to_dict()
                                               if self.overall_weighted_error is not None else None)},
                "heterogeneity": {k: v.to_dict() for k, v in self.heterogeneity.items()},
                "correction": self.correction, "correction_text": self.correction_text,
                "small_group": self.small_group, "binned": self.binned, "confidence": self.confidence,
                "notes": list(self.notes)}


# -- grouping -------------------------------------------------------------------------------------------------
def subgroup_labels(values, max_levels: int = MAX_LEVELS, bins: int = QUANTILE_BINS) -> tuple[np.ndarray, str]:
    """One text label per case and how they were made: values as text; a numeric column with more than
    `max_levels` distinct values cut at its quantiles into `bins` ranges ("[512, 1024)"); blanks -> MISSING_VALUE."""
    series = pd.Series(np.asarray(values, dtype=object))
    blank = series.isna() | (series.astype(str).str.strip() == "")
    numeric = pd.to_numeric(series.where(~blank), errors="coerce")
    present = ~blank
    if present.any() and numeric[present].notna().all() and numeric[present].nunique() > max_levels:
        known = numeric[present].to_numpy(dtype=float)
        edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)))
        if len(edges) < 3:
            # One value holds most cases (image widths of a resized set): cut the distinct values instead.
            edges = np.unique(np.quantile(np.unique(known), np.linspace(0, 1, bins + 1), method="lower"))
        names = ([f"[{lo:.4g}, {hi:.4g})" for lo, hi in zip(edges[:-2], edges[1:-1])]
                 + [f"[{edges[-2]:.4g}, {edges[-1]:.4g}]"])
        # Bin i holds edges[i] <= x < edges[i + 1]; the last one is closed on the right.
        position = np.clip(np.searchsorted(edges, numeric.fillna(edges[0]).to_numpy(dtype=float), side="right") - 1,
                           0, len(names) - 1)
        out = np.array([names[i] for i in position], dtype=object)
        out[~present.to_numpy()] = MISSING_VALUE
        return out, f"quantile bins ({len(names)} ranges of {int(numeric[present].nunique())} distinct values)"
    text = series.astype(str).str.strip()
    return text.where(present, MISSING_VALUE).to_numpy(dtype=object), ""


def subgroup_order(labels: np.ndarray) -> list[str]:
    """Bins and values that start with a number ("[512, 1024)", "1-5 y", "65+ y") in numeric order, other values in
    text order; the missing group last."""
    unique = [u for u in pd.unique(labels) if u != MISSING_VALUE]

    def key(text: str):
        match = re.match(r"\[?\s*(-?\d+(?:\.\d*)?(?:e[-+]?\d+)?)", text, flags=re.IGNORECASE)
        return (0, float(match.group(1)), text) if match else (1, 0.0, text)

    ordered = sorted(unique, key=key)
    return ordered + ([MISSING_VALUE] if MISSING_VALUE in set(labels) else [])


# -- two-sample statistics --------------------------------------------------------------------------------------
SEPARATION_NOTE = ("a group whose classes the score separates completely has DeLong variance 0: its exact one-sided "
                   "interval's width is used as a normal half-width instead (conservative)")


def auc_variance(auc: AucEstimate, confidence: float = 0.95) -> tuple[float, str]:
    """The variance a comparison uses for this AUC, and a note: DeLong's; for complete separation (variance 0, the
    exact one-sided bound of core.metrics.roc) the bound's distance to the point, read as a normal half-width."""
    if auc.variance == 0.0 and math.isfinite(auc.low) and math.isfinite(auc.high) and auc.high > auc.low:
        return ((auc.high - auc.low) / normal_quantile(confidence)) ** 2, SEPARATION_NOTE
    return auc.variance, ""
def independent_auc_difference(a: AucEstimate, b: AucEstimate, confidence: float = 0.95) -> tuple[Interval, GroupTest]:
    """AUC_a - AUC_b for two independent samples (different cases): the DeLong variances add; normal interval
    and two-sided z test (pROC's roc.test(paired = FALSE), method "delong")."""
    level = check_confidence(confidence)
    delta = a.value - b.value
    (var_a, note_a), (var_b, note_b) = auc_variance(a, level), auc_variance(b, level)
    variance = var_a + var_b
    note = note_a or note_b
    n = (a.n or 0) + (b.n or 0)
    if not (math.isfinite(delta) and math.isfinite(variance)):
        reason = a.reason or b.reason or "DeLong's variance is unknown in one of the groups"
        return (Interval(delta, math.nan, math.nan, AUC_GAP_METHOD, n=n, confidence=level, reason=reason),
                _no_test(AUC_GAP_METHOD, reason))
    if variance <= 0.0:
        reason = "both AUCs have zero estimated variance (complete separation)"
        return (Interval(delta, math.nan, math.nan, AUC_GAP_METHOD, n=n, confidence=level, reason=reason),
                _no_test(AUC_GAP_METHOD, reason))
    se = math.sqrt(variance)
    half = normal_quantile(level) * se
    z = delta / se
    return (Interval(delta, max(-1.0, delta - half), min(1.0, delta + half), AUC_GAP_METHOD, n=n, confidence=level,
                     reason=note),
            GroupTest(float(z), float(2.0 * stats.norm.sf(abs(z))), f"{AUC_GAP_METHOD} z test", reason=note))


def proportion_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[Interval, GroupTest]:
    """x1/n1 - x2/n2 for two independent groups: Newcombe's hybrid score interval; Pearson's chi-square test
    of the 2 x 2 table (no continuity correction), Fisher's exact test when an expected count is under 5."""
    level = check_confidence(confidence)
    if n1 == 0 or n2 == 0:
        reason = "no cases in this group" if n1 == 0 else "no cases in the rest of the test set"
        return (Interval(math.nan, math.nan, math.nan, PROPORTION_GAP_METHOD, n=n1 + n2, confidence=level,
                         reason=reason), _no_test("chi-square", reason))
    delta = x1 / n1 - x2 / n2
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=1.0 - level)
    gap = Interval(float(delta), float(min(low, delta)), float(max(high, delta)), PROPORTION_GAP_METHOD,
                   n=n1 + n2, confidence=level)
    table = np.array([[x1, n1 - x1], [x2, n2 - x2]])
    if (table.sum(axis=0) == 0).any():
        reason = "every case in both groups has the same outcome: nothing to test"
        return gap, GroupTest(0.0, 1.0, "chi-square", df=1, reason=reason)
    expected = stats.contingency.expected_freq(table)
    if (expected < 5).any():
        result = stats.fisher_exact(table)
        return gap, GroupTest(float(result.statistic), float(result.pvalue), "Fisher's exact test")
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return gap, GroupTest(float(chi2), float(p), "Pearson chi-square", df=int(dof))


def auc_heterogeneity(aucs: list[AucEstimate], confidence: float = 0.95) -> GroupTest:
    """Chi-square test that k independent AUCs are equal: Q = sum (AUC_i - pooled)^2 / var_i with the
    inverse-variance pooled AUC, k - 1 degrees of freedom (var_i: auc_variance). Groups without a variance (no
    positives or negatives, or a single one) cannot be weighted and are left out (said in `reason`)."""
    method = "chi-square test of equal AUCs (DeLong variances, inverse-variance pooled)"
    variances = [auc_variance(a, confidence) for a in aucs]
    usable = [(a, v) for a, (v, _) in zip(aucs, variances) if math.isfinite(a.value) and math.isfinite(v) and v > 0]
    left_out = len(aucs) - len(usable)
    notes = [f"{left_out} group(s) without a DeLong variance left out"] if left_out else []
    notes += sorted({note for _, note in variances if note})
    note = "; ".join(notes)
    if len(usable) < 2:
        return _no_test(method, "fewer than two groups have an AUC with a DeLong variance"
                        + (f" ({note})" if note else ""))
    weights = np.array([1.0 / v for _, v in usable])
    values = np.array([a.value for a, _ in usable])
    pooled = float(weights @ values / weights.sum())
    q = float(weights @ (values - pooled) ** 2)
    df = len(usable) - 1
    return GroupTest(q, float(stats.chi2.sf(q, df)), method, df=df, reason=note)


def proportion_heterogeneity(successes: list[int], totals: list[int]) -> GroupTest:
    """Chi-square test of independence of the k x 2 table (successes, failures per group); groups without cases
    are left out. Fisher's exact test for a 2 x 2 table with an expected count under 5."""
    method = "Pearson chi-square (k x 2)"
    rows = [(x, n - x) for x, n in zip(successes, totals) if n > 0]
    if len(rows) < 2:
        return _no_test(method, "fewer than two groups have cases")
    table = np.array(rows)
    if (table.sum(axis=0) == 0).any():
        return GroupTest(0.0, 1.0, method, df=len(rows) - 1,
                         reason="every case has the same outcome in every group: nothing to test")
    expected = stats.contingency.expected_freq(table)
    if table.shape[0] == 2 and (expected < 5).any():
        result = stats.fisher_exact(table)
        return GroupTest(float(result.statistic), float(result.pvalue), "Fisher's exact test")
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    reason = "some expected counts are under 5: the chi-square approximation is rough" if (expected < 5).any() else ""
    return GroupTest(float(chi2), float(p), method, df=int(dof), reason=reason)


def holm_adjusted(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' multipletests); NaN (tests not computed) stay NaN and do not count."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


# -- the table ----------------------------------------------------------------------------------------------
def _weighted_error(mask, truth, probabilities, calls, penalty, patient_ids, n_resamples, seed, confidence):
    if truth is None or probabilities is None or calls is None or penalty is None:
        return None
    ids = None if patient_ids is None else np.asarray(patient_ids, dtype=object)[mask]
    return weighted_error(np.asarray(truth)[mask], np.asarray(probabilities)[mask], np.asarray(calls)[mask], penalty,
                          ids, n_resamples, seed, confidence)


def subgroup_table(column: str, values, positive, scores, called, *, truth=None, probabilities=None, calls=None,
                   penalty=None, patient_ids=None, n_resamples: int = HEADLINE_RESAMPLES, seed: int = HEADLINE_SEED,
                   confidence: float = 0.95, small_group: int = SMALL_GROUP) -> SubgroupTable:
    """The subgroups of `column` (one value per case in `values`) for one binary view of the task.

    positive: the truth on the view (bool); scores: the model's score for the positive side (higher = more
    likely); called: the model's call (positive side or not) at its operating point. Optional for the weighted
    error: truth (class index), probabilities (n x k), calls (class index), penalty (k x k), patient_ids.
    """
    level = check_confidence(confidence)
    truth_view = as_binary_truth(positive, "positive")
    n = truth_view.shape[0]
    score = as_scores(scores, n)
    calls_view = as_binary_truth(called, "called")
    if calls_view.shape[0] != n or len(values) != n:
        raise InputError(f"subgroup column {column!r}: {len(values)} values, {calls_view.shape[0]} calls and "
                         f"{n} cases differ in length")
    if n == 0:
        raise InputError(f"subgroup column {column!r}: no cases to analyse")
    labels, binned = subgroup_labels(values)
    groups = subgroup_order(labels)
    every = np.ones(n, dtype=bool)

    def rates(mask):
        tp, fp, fn, tn = counts_from_labels(truth_view[mask], calls_view[mask])
        return (tp, tp + fn, tn, tn + fp), diagnostic_metrics(tp, fp, fn, tn, confidence=level)

    _, overall = rates(every)
    overall_auc = roc_auc(truth_view, score, level)
    overall_error = _weighted_error(every, truth, probabilities, calls, penalty, patient_ids, n_resamples, seed,
                                    level)
    drafts, group_counts = [], []
    for value in groups:
        inside = labels == value
        rest = ~inside
        counts, metrics = rates(inside)
        rest_counts, _ = rates(rest)
        auc = roc_auc(truth_view[inside], score[inside], level)
        if rest.any():
            rest_auc = roc_auc(truth_view[rest], score[rest], level)
            auc_gap, auc_test = independent_auc_difference(auc, rest_auc, level)
        else:
            reason = "this group is the whole test set: there is no rest to compare with"
            auc_gap = Interval(math.nan, math.nan, math.nan, AUC_GAP_METHOD, n=int(n), confidence=level,
                               reason=reason)
            auc_test = _no_test(AUC_GAP_METHOD, reason)
        sens_gap, sens_test = proportion_difference(counts[0], counts[1], rest_counts[0], rest_counts[1], level)
        spec_gap, spec_test = proportion_difference(counts[2], counts[3], rest_counts[2], rest_counts[3], level)
        ids = None if patient_ids is None else pd.Series(np.asarray(patient_ids, dtype=object)[inside])
        group_counts.append(counts)
        drafts.append(dict(
            value=str(value), n=int(inside.sum()), n_positive=counts[1], n_negative=counts[3], auc=auc,
            sensitivity=metrics.sensitivity, specificity=metrics.specificity,
            weighted_error=_weighted_error(inside, truth, probabilities, calls, penalty, patient_ids, n_resamples,
                                           seed, level),
            auc_gap=auc_gap, sensitivity_gap=sens_gap, specificity_gap=spec_gap, auc_test=auc_test,
            sensitivity_test=sens_test, specificity_test=spec_test,
            small=bool(counts[1] < small_group or counts[3] < small_group),
            n_patients=int(ids.nunique()) if ids is not None and ids.notna().any() else None))
    for name in ("auc", "sensitivity", "specificity"):
        adjusted = holm_adjusted([d[f"{name}_test"].p_value for d in drafts])
        for d, p in zip(drafts, adjusted):
            d[f"{name}_p_adjusted"] = float(p)
    rows = tuple(SubgroupRow(**d) for d in drafts)
    heterogeneity = {
        "auc": auc_heterogeneity([r.auc for r in rows], level),
        "sensitivity": proportion_heterogeneity([c[0] for c in group_counts], [c[1] for c in group_counts]),
        "specificity": proportion_heterogeneity([c[2] for c in group_counts], [c[3] for c in group_counts]),
    }
    notes = []
    small = [r.value for r in rows if r.small]
    if small:
        notes.append(f"{len(small)} subgroup(s) have fewer than {small_group} positive or negative cases "
                     f"({', '.join(small[:5])}{' ...' if len(small) > 5 else ''}): read their intervals, not their "
                     "point estimates")
    if len(rows) == 1:
        notes.append(f"column {column!r} has a single value in this test set: nothing to compare")
    return SubgroupTable(column=str(column), rows=rows, overall_auc=overall_auc,
                         overall_sensitivity=overall.sensitivity, overall_specificity=overall.specificity,
                         overall_weighted_error=overall_error, heterogeneity=heterogeneity,
                         small_group=int(small_group), binned=binned, confidence=level, notes=tuple(notes))
