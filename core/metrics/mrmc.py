"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette ANOVA with Hillis's degrees of freedom.

Random readers and cases (RRRC), fixed readers (FRRC) and fixed cases (RRFC), each with a global test,
pairwise differences and per-treatment intervals, as in RJafroc (`StSignificanceTesting`, method "OR")
and MRMCaov (`mrmc`). References: Obuchowski & Rockette (1995); Hillis (2007, 2014); Hillis et al. (2005).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from core.errors import InputError
from core.metrics.intervals import check_open_fraction, p_value_text
from core.metrics.mrmc_design import DESIGNS, StudyLayout, arrange_readings
from core.metrics.mrmc_figures import COVARIANCES, FIGURES, block_figures


@dataclass(frozen=True)
class VarianceComponents:
    """Obuchowski-Rockette components: reader and treatment x reader variances, error (co)variances.

    cov1 = same reader, different treatments; cov2 = different readers, same treatment;
    cov3 = different readers and treatments.
    """

    var_R: float
    var_TR: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float


@dataclass(frozen=True)
class TreatmentEstimate:
    """One treatment's reader-averaged figure with its interval (from that treatment's data alone)."""

    estimate: float
    stderr: float
    df: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class PairDifference:
    """Reader-averaged difference `first - second` with its test and interval."""

    first: str
    second: str
    diff: float
    stderr: float
    df: float
    statistic: float
    p: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class AnalysisResult:
    """One of RRRC / FRRC / RRFC: the global test, the pairwise differences, the per-treatment intervals."""

    statistic: float
    df_num: float
    df_den: float
    p: float
    pairs: tuple[PairDifference, ...]
    treatments: dict

    def _common(self) -> dict:
        first = self.pairs[0]
        return {"p": self.p, "diff": first.diff, "stderr": first.stderr, "ci95": list(first.ci95),
                "pairs": [_pair_dict(pair) for pair in self.pairs],
                "treatments": {name: {"estimate": t.estimate, "stderr": t.stderr, "df": t.df,
                                      "ci95": list(t.ci95)} for name, t in self.treatments.items()}}


def _pair_dict(pair: PairDifference) -> dict:
    return {"first": pair.first, "second": pair.second, "diff": pair.diff, "stderr": pair.stderr,
            "df": pair.df, "statistic": pair.statistic, "p": pair.p, "ci95": list(pair.ci95)}


@dataclass(frozen=True)
class MrmcResult:
    """Everything an MRMC report prints; `to_dict()` is the JSON the CLI writes."""

    figure: str
    covariance: str
    design: str
    alpha: float
    treatment_names: tuple[str, ...]
    reader_names: tuple[str, ...]
    figures: np.ndarray          # treatments x readers
    n_cases: int
    variance_components: VarianceComponents
    mean_squares: dict
    rrrc: AnalysisResult
    frrc: AnalysisResult
    rrfc: AnalysisResult

    @property
    def treatment_means(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.treatment_names, self.figures.mean(axis=1))}

    def to_dict(self) -> dict:
        treatments = {
            name: {"mean": float(self.figures[i].mean()),
                   "readers": {reader: float(self.figures[i, j]) for j, reader in enumerate(self.reader_names)}}
            for i, name in enumerate(self.treatment_names)}
        vc = self.variance_components
        rrrc = {"F": self.rrrc.statistic, "df_num": self.rrrc.df_num, "df_den": self.rrrc.df_den,
                **self.rrrc._common()}
        frrc = {"chi2": self.frrc.statistic, "df": self.frrc.df_num, **self.frrc._common()}
        rrfc = {"F": self.rrfc.statistic, "df_num": self.rrfc.df_num, "df_den": self.rrfc.df_den,
                **self.rrfc._common()}
        return {"treatments": treatments,
                "variance_components": {"var_R": vc.var_R, "var_TR": vc.var_TR, "var_error": vc.var_error,
                                        "cov1": vc.cov1, "cov2": vc.cov2, "cov3": vc.cov3},
                "rrrc": rrrc, "frrc": frrc, "rrfc": rrfc}


def mrmc_analysis(readings: pd.DataFrame, *, figure: str = "auc", covariance: str = "jackknife",
                  threshold: float | None = None, alpha: float = 0.05, design: str | None = None) -> MrmcResult:
    """Obuchowski-Rockette MRMC analysis of a long table `reader, treatment, case, truth, rating`.

    figure: "auc" (empirical, ties 1/2), "sensitivity" or "specificity" of `rating >= threshold`.
    covariance: "jackknife" (any figure and design), "delong" (AUC, fully crossed), "unbiased" (AUC).
    design: None detects it from the case codings, as MRMCaov does: "crossed" (every reader reads
    every case in every treatment), "cases_within_readers" or "cases_within_treatments".
    Differences are the first treatment minus the second in sorted order (all pairs under `pairs`).
    Intervals are at level 1 - alpha (the key is named ci95 after the default).
    """
    if figure not in FIGURES:
        raise InputError(f"figure must be one of {FIGURES}, got {figure!r}")
    if covariance not in COVARIANCES:
        raise InputError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
    if design is not None and design not in DESIGNS:
        raise InputError(f"design must be one of {DESIGNS} (or None to detect it), got {design!r}")
    alpha = check_open_fraction(alpha, "alpha", "0.05")
    if figure == "auc" and threshold is not None:
        raise InputError("threshold applies to sensitivity and specificity only; the AUC uses every rating")
    if figure != "auc":
        if threshold is None:
            raise InputError(f"{figure} needs a threshold: a rating >= threshold counts as a positive reading")
        threshold = float(threshold)
    layout = arrange_readings(readings, design)
    if covariance == "delong" and layout.design != "crossed":
        raise InputError("DeLong covariance needs a fully crossed design (every reader reads every case in "
                         "every treatment); use covariance='jackknife' or 'unbiased' for nested cases")
    figures, cov = _figures_and_covariance(layout, figure, covariance, threshold)
    return _analyse(layout, figures, cov, figure, covariance, alpha)


def _figures_and_covariance(layout: StudyLayout, figure: str, covariance: str, threshold):
    """Treatments x readers figures and their (T*R) x (T*R) covariance over case sampling."""
    t, r = len(layout.treatments), len(layout.readers)
    figures = np.empty(t * r)
    cov = np.zeros((t * r, t * r))
    results = []
    for block in layout.blocks:
        found = block_figures(block.truth, block.ratings, figure, covariance, threshold, block.label)
        figures[block.rows] = found.values
        results.append((block, found))
    if covariance == "jackknife":
        # Jackknife over every resampled case of the study (MRMCaov): N counts all blocks' cases, and
        # readings that do not share a case have zero covariance by design.
        total = sum(found.jackknife.shape[1] for _, found in results)
        for block, found in results:
            centred = found.jackknife - found.jackknife.mean(axis=1, keepdims=True)
            cov[np.ix_(block.rows, block.rows)] = (total - 1) / total * (centred @ centred.T)
    else:
        for block, found in results:
            cov[np.ix_(block.rows, block.rows)] = found.covariance
    return figures.reshape(t, r), cov


def _mean_over(cov4: np.ndarray, same_treatment: bool, same_reader: bool) -> float:
    """Average of cov4[i, j, i', j'] over the index pairs of one Obuchowski-Rockette kind."""
    t, r = cov4.shape[:2]
    ti = np.arange(t)[:, None, None, None] == np.arange(t)[None, None, :, None]
    rj = np.arange(r)[None, :, None, None] == np.arange(r)[None, None, None, :]
    mask = (ti if same_treatment else ~ti) & (rj if same_reader else ~rj)
    mask = np.broadcast_to(mask, cov4.shape)
    return float(cov4[mask].mean()) if mask.any() else 0.0


def _analyse(layout: StudyLayout, theta: np.ndarray, cov: np.ndarray, figure, covariance, alpha) -> MrmcResult:
    t, r = theta.shape
    if t < 2:
        raise InputError(f"an MRMC comparison needs at least two treatments (reading conditions); found {t}")
    if r < 2:
        raise InputError(f"an MRMC analysis needs at least two readers; found {r}")
    cov4 = cov.reshape(t, r, t, r)
    var_error = _mean_over(cov4, True, True)
    cov1 = _mean_over(cov4, False, True)
    cov2 = _mean_over(cov4, True, False)
    cov3 = _mean_over(cov4, False, False)
    grand = theta.mean()
    by_treatment, by_reader = theta.mean(axis=1), theta.mean(axis=0)
    ms_t = r * ((by_treatment - grand) ** 2).sum() / (t - 1)
    ms_r = t * ((by_reader - grand) ** 2).sum() / (r - 1)
    interaction = theta - by_treatment[:, None] - by_reader[None, :] + grand
    ms_tr = (interaction ** 2).sum() / ((t - 1) * (r - 1))
    components = VarianceComponents(
        var_R=float((ms_r - ms_tr) / t - cov1 + cov3),
        var_TR=float(ms_tr - var_error + cov1 + cov2 - cov3),
        var_error=var_error, cov1=cov1, cov2=cov2, cov3=cov3)
    # Per-treatment pieces: each treatment analysed from its own readings only.
    ms_r_each = ((theta - by_treatment[:, None]) ** 2).sum(axis=1) / (r - 1)
    var_each = np.array([_mean_over(cov4[i:i + 1, :, i:i + 1, :], True, True) for i in range(t)])
    cov2_each = np.array([_mean_over(cov4[i:i + 1, :, i:i + 1, :], True, False) for i in range(t)])
    names = layout.treatments
    pairs = list(combinations(range(t), 2))
    diffs = [float(by_treatment[a] - by_treatment[b]) for a, b in pairs]

    def pair_results(stderr: float, df: float) -> tuple[PairDifference, ...]:
        dist = stats.norm if math.isinf(df) else stats.t(df)
        crit = float(dist.ppf(1.0 - alpha / 2.0))
        out = []
        for (a, b), diff in zip(pairs, diffs):
            stat = diff / stderr if stderr > 0 else math.copysign(math.inf, diff) if diff else 0.0
            p = float(2.0 * dist.sf(abs(stat)))
            out.append(PairDifference(names[a], names[b], diff, stderr, df, stat, p,
                                      (diff - crit * stderr, diff + crit * stderr)))
        return tuple(out)

    def treatment_results(stderrs, dfs) -> dict:
        out = {}
        for i, name in enumerate(names):
            dist = stats.norm if math.isinf(dfs[i]) else stats.t(dfs[i])
            half = float(dist.ppf(1.0 - alpha / 2.0)) * stderrs[i]
            # A figure of merit lies in [0, 1]; MRMCaov clips its per-treatment intervals there too.
            out[name] = TreatmentEstimate(float(by_treatment[i]), float(stderrs[i]), float(dfs[i]),
                                          (max(0.0, float(by_treatment[i] - half)),
                                           min(1.0, float(by_treatment[i] + half))))
        return out

    # RRRC: denominator MS(TR) + r max(cov2 - cov3, 0); Hillis (2007) denominator degrees of freedom.
    den = ms_tr + r * max(cov2 - cov3, 0.0)
    df_h = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
    f_rrrc = ms_t / den if den > 0 else math.inf
    den_each = ms_r_each + r * np.maximum(cov2_each, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df_each = np.where(ms_r_each > 0, den_each ** 2 / (ms_r_each ** 2 / (r - 1)), np.inf)
    rrrc = AnalysisResult(float(f_rrrc), float(t - 1), float(df_h), float(stats.f.sf(f_rrrc, t - 1, df_h)),
                          pair_results(math.sqrt(2.0 / r * den), df_h),
                          treatment_results(np.sqrt(den_each / r), df_each))
    # FRRC: chi-square on Var - Cov1 + (r - 1) max(Cov2 - Cov3, 0).
    den_fixed = var_error - cov1 + (r - 1) * max(cov2 - cov3, 0.0)
    chi2 = (t - 1) * ms_t / den_fixed if den_fixed > 0 else math.inf
    frrc = AnalysisResult(float(chi2), float(t - 1), math.inf, float(stats.chi2.sf(chi2, t - 1)),
                          pair_results(math.sqrt(2.0 / r * max(den_fixed, 0.0)), math.inf),
                          treatment_results(np.sqrt((var_each + (r - 1) * np.maximum(cov2_each, 0.0)) / r),
                                            np.full(t, math.inf)))
    # RRFC: F = MS(T) / MS(TR) on (t - 1, (t - 1)(r - 1)) degrees of freedom.
    df_rrfc = float((t - 1) * (r - 1))
    f_rrfc = ms_t / ms_tr if ms_tr > 0 else math.inf
    rrfc = AnalysisResult(float(f_rrfc), float(t - 1), df_rrfc, float(stats.f.sf(f_rrfc, t - 1, df_rrfc)),
                          pair_results(math.sqrt(2.0 / r * ms_tr), df_rrfc),
                          treatment_results(np.sqrt(ms_r_each / r), np.full(t, float(r - 1))))
    return MrmcResult(figure=figure, covariance=covariance, design=layout.design, alpha=alpha,
                      treatment_names=names, reader_names=layout.readers, figures=theta,
                      n_cases=layout.n_cases, variance_components=components,
                      mean_squares={"T": float(ms_t), "R": float(ms_r), "TR": float(ms_tr)},
                      rrrc=rrrc, frrc=frrc, rrfc=rrfc)


_FIGURE_WORDS = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity"}


def _three(x: float) -> str:
    """Three decimals without a "-0.000" (a bound a hair below zero prints as 0.000; p tells the rest)."""
    text = f"{x:.3f}"
    return "0.000" if text == "-0.000" else text


def _treatment_words(name: str) -> str:
    """A bare code ("2") reads as "treatment 2"; a name ("aided reading") as itself."""
    return f"treatment {name}" if name.replace(".", "", 1).isdigit() else name


def _p_text(p: float) -> str:
    text = p_value_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def describe_difference(result: MrmcResult, reference: str | None = None) -> list[str]:
    """Plain sentences for the random-readers, random-cases result: each treatment against `reference`
    (default the first), e.g. "Across readers and cases, aided rather than unaided reading raised AUC by
    0.044 (95% CI 0.000 to 0.088, p = 0.052)."."""
    names = result.treatment_names
    reference = names[0] if reference is None else str(reference)
    if reference not in names:
        raise InputError(f"reference treatment {reference!r} is not one of {list(names)}")
    figure = _FIGURE_WORDS[result.figure]
    level = f"{1.0 - result.alpha:.0%}"
    sentences = []
    for pair in result.rrrc.pairs:
        if reference not in (pair.first, pair.second):
            continue
        other = pair.second if pair.first == reference else pair.first
        other_words, reference_words = _treatment_words(other), _treatment_words(reference)
        sign = -1.0 if pair.first == reference else 1.0     # report other - reference
        diff = sign * pair.diff
        low, high = sorted((sign * pair.ci95[0], sign * pair.ci95[1]))
        verb = "raised" if diff > 0 else "lowered" if diff < 0 else "did not change"
        amount = f" by {_three(abs(diff))}" if diff else ""
        sentences.append(f"Across readers and cases, {other_words} rather than {reference_words} {verb} "
                         f"{figure}{amount} ({level} CI {_three(low)} to {_three(high)}, {_p_text(pair.p)}).")
    return sentences
