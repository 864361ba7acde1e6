"""Planning an MRMC study: power and readers x cases from pilot Obuchowski-Rockette components.

Hillis & Berbaum (2004), Hillis, Obuchowski & Berbaum (2011): the pilot's error (co)variances scale
with pilot cases / planned cases; the treatment x reader variance does not. Two treatments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from core.errors import InputError
from core.metrics.intervals import check_open_fraction
from core.metrics.mrmc import MrmcResult, VarianceComponents

ANALYSES = ("rrrc", "frrc", "rrfc")


@dataclass(frozen=True)
class PilotStudy:
    """What a power calculation needs from a pilot: its OR components and how many cases they came from."""

    components: VarianceComponents
    n_cases: int

    @classmethod
    def from_result(cls, result: MrmcResult) -> "PilotStudy":
        if result.design != "crossed":
            raise InputError("study planning uses a fully crossed pilot (every reader read every case in "
                             f"every treatment); this pilot's design is {result.design.replace('_', ' ')}")
        return cls(result.variance_components, result.n_cases)


@dataclass(frozen=True)
class PowerEstimate:
    readers: int
    cases: int
    effect: float
    power: float
    noncentrality: float
    df_den: float
    analysis: str


def _check_size(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < minimum:
        raise InputError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def mrmc_power(pilot: PilotStudy, readers: int, cases: int, effect: float, *, alpha: float = 0.05,
               analysis: str = "rrrc") -> PowerEstimate:
    """Power of a two-treatment OR test with `readers` x `cases` to detect a figure-of-merit difference `effect`.

    RRRC: noncentral F with Hillis's denominator df; FRRC: noncentral chi-square (1 df);
    RRFC: noncentral F on (1, readers - 1). A negative treatment x reader variance counts as 0.
    """
    if analysis not in ANALYSES:
        raise InputError(f"analysis must be one of {ANALYSES}, got {analysis!r}")
    r = _check_size(readers, "readers", 2)
    k = _check_size(cases, "cases", 2)
    alpha = check_open_fraction(alpha, "alpha", "0.05")
    effect = float(effect)
    if not math.isfinite(effect) or effect == 0:
        raise InputError(f"effect must be a non-zero difference in the figure of merit (e.g. 0.05), got {effect!r}")
    vc = pilot.components
    scale = pilot.n_cases / k
    var_tr = max(vc.var_TR, 0.0)
    between = max(vc.cov2 - vc.cov3, 0.0)
    case_part = scale * (vc.var_error - vc.cov1)
    if analysis == "rrrc":
        den = var_tr + case_part + scale * (r - 1) * between
        ms_tr = var_tr + case_part - scale * between
        df = den ** 2 * (r - 1) / ms_tr ** 2 if ms_tr > 0 else math.inf
    elif analysis == "frrc":
        den = case_part + scale * (r - 1) * between
        df = math.inf
    else:
        den = var_tr + case_part - scale * between
        df = float(r - 1)
    if den <= 0:
        raise InputError("the pilot's variance components give no variance for the difference; "
                         "a power calculation needs a pilot with some reader or case variability")
    ncp = r * effect ** 2 / (2.0 * den)
    if math.isinf(df):
        power = float(stats.ncx2.sf(stats.chi2.ppf(1 - alpha, 1), 1, ncp))
    else:
        power = float(stats.ncf.sf(stats.f.ppf(1 - alpha, 1, df), 1, df, ncp))
    return PowerEstimate(r, k, effect, power, float(ncp), float(df), analysis)


def cases_for_power(pilot: PilotStudy, readers: int, effect: float, *, target_power: float = 0.8,
                    alpha: float = 0.05, analysis: str = "rrrc", max_cases: int = 100_000) -> PowerEstimate | None:
    """The fewest cases giving at least `target_power` with `readers` readers; None when even
    `max_cases` do not (with random readers, more cases cannot remove the reader variability)."""
    target = check_open_fraction(target_power, "target power", "0.8")
    if mrmc_power(pilot, readers, max_cases, effect, alpha=alpha, analysis=analysis).power < target:
        return None
    low, high = 2, max_cases          # power rises with cases: bisect on the smallest sufficient count
    if mrmc_power(pilot, readers, low, effect, alpha=alpha, analysis=analysis).power >= target:
        high = low
    while high - low > 1:
        middle = (low + high) // 2
        if mrmc_power(pilot, readers, middle, effect, alpha=alpha, analysis=analysis).power >= target:
            high = middle
        else:
            low = middle
    return mrmc_power(pilot, readers, high, effect, alpha=alpha, analysis=analysis)


def power_table(pilot: PilotStudy, effect: float, readers=range(3, 16), *, target_power: float = 0.8,
                alpha: float = 0.05, analysis: str = "rrrc") -> pd.DataFrame:
    """Readers x cases combinations reaching the target power (the planning table of RJafroc's SsPowerTable)."""
    rows = []
    for r in readers:
        found = cases_for_power(pilot, r, effect, target_power=target_power, alpha=alpha, analysis=analysis)
        if found is not None:
            rows.append({"readers": found.readers, "cases": found.cases, "power": found.power})
    return pd.DataFrame(rows, columns=["readers", "cases", "power"])
