"""MRMC study planning against RJafroc's published sample-size results for the Van Dyke pilot (dataset02).

Expected values: RJafroc tests/testthat (Sample Size ROC, "updated from Hillis 2011 and 2018 papers"):
SsPowerGivenJK(dataset02, method = "ORH", effectSize = -0.043800322, J = 10, K = 165 / 131 / 53) for
RRRC / FRRC / RRFC = 0.80541995 / 0.80091813 / 0.80496663 (tolerance 1e-8); J = 6, K = 111, RRRC:
0.5526116; SsSampleSizeKGivenJ(dataset02, J = 6) = 251 cases; SsPowerTable row J = 6: K = 251, power 0.801.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import InputError
from core.metrics.mrmc import mrmc_analysis
from core.metrics.mrmc_planning import PilotStudy, cases_for_power, mrmc_power, power_table

VANDYKE = Path(__file__).parent / "data" / "reader_studies" / "vandyke.csv"
OBSERVED = -0.043800322   # the pilot's own reader-averaged difference (RJafroc's default effect size)


@pytest.fixture(scope="module")
def pilot() -> PilotStudy:
    return PilotStudy.from_result(mrmc_analysis(pd.read_csv(VANDYKE)))


@pytest.mark.parametrize("analysis, cases, expected", [
    ("rrrc", 165, 0.80541995), ("frrc", 131, 0.80091813), ("rrfc", 53, 0.80496663)])
def test_power_matches_rjafroc(pilot, analysis, cases, expected):
    assert pilot.n_cases == 114
    found = mrmc_power(pilot, 10, cases, OBSERVED, analysis=analysis)
    assert found.power == pytest.approx(expected, abs=1e-8)


def test_power_six_readers_matches_rjafroc(pilot):
    assert mrmc_power(pilot, 6, 111, OBSERVED).power == pytest.approx(0.5526116, abs=5e-8)


def test_cases_for_power_matches_rjafroc(pilot):
    found = cases_for_power(pilot, 6, OBSERVED)
    assert found.cases == 251
    assert round(found.power, 3) == 0.801
    assert mrmc_power(pilot, 6, 250, OBSERVED).power < 0.8     # the smallest sufficient number


def test_power_table_rises_as_readers_are_added(pilot):
    table = power_table(pilot, OBSERVED, readers=range(4, 12))
    row = table[table.readers == 6].iloc[0]
    assert (row.cases, round(row.power, 3)) == (251, 0.801)
    assert table["cases"].is_monotonic_decreasing
    assert (table["power"] >= 0.8).all()


def test_unreachable_power_is_none_not_a_number(pilot):
    # Two readers: the reader x treatment variance alone keeps power below 0.99 with any case count.
    assert cases_for_power(pilot, 2, 0.01, target_power=0.99, max_cases=10_000) is None


def test_bad_planning_input(pilot):
    with pytest.raises(InputError, match="effect"):
        mrmc_power(pilot, 6, 100, 0.0)
    with pytest.raises(InputError, match="readers"):
        mrmc_power(pilot, 1, 100, 0.05)
    with pytest.raises(InputError, match="analysis"):
        mrmc_power(pilot, 6, 100, 0.05, analysis="dbm")


def test_nested_pilot_is_refused():
    data = pd.read_csv(VANDYKE)
    nested = data.assign(case=data.reader.astype(str) + "." + data.case.astype(str))
    with pytest.raises(InputError, match="fully crossed pilot"):
        PilotStudy.from_result(mrmc_analysis(nested))
