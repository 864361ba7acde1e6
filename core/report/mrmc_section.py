"""The report's MRMC result: the newest aided-reading study on the test set, analysed by core.metrics.mrmc."""

from __future__ import annotations

from core.errors import InputError
from core.store import Workspace

MRMC_METHOD = "Obuchowski-Rockette analysis of the empirical AUC, jackknife covariance, random readers and cases"


def mrmc_section(ws: Workspace, test_set_id: str) -> dict:
    """{"included": True, study, readers, cases, sentences, summary, method} for the newest aided study on the test
    set whose readers have finished both sessions; else why there is none."""
    from core.metrics.mrmc import describe_difference, mrmc_analysis
    from core.readers.aided_study import aided_mrmc_readings, list_aided_studies

    studies = list_aided_studies(ws, test_set_id)  # newest first
    if not studies:
        return {"included": False, "reason": "no aided-reading (MRMC) study on this test set"}
    study = studies[0]
    try:
        table = aided_mrmc_readings(ws, study.id)
        if table.empty:
            return {"included": False, "reason": f"no reader has finished both sessions of study {study.name!r}"}
        result = mrmc_analysis(table)
    except InputError as exc:
        return {"included": False, "reason": str(exc)}
    sentences = describe_difference(result)
    return {"included": True, "study": study.name, "readers": list(result.reader_names), "cases": result.n_cases,
            "sentences": sentences, "method": MRMC_METHOD,
            "summary": f"In the aided-reading study \u201c{study.name}\u201d ({len(result.reader_names)} readers, "
                       f"{result.n_cases} cases, {MRMC_METHOD}): " + " ".join(sentences)}
