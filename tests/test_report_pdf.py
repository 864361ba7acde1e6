"""The report as PDF (Chromium print of the HTML), the `core report` command, the reporting checklist and the
methods paragraph, on the seeded workspace's real predictions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.report import build_report, report_from_predictions
from core.report.checklist import ITEMS, TO_BE_COMPLETED, fill_checklist
from core.report.format import fmt
from core.report.pdf import render_pdf
from core.store import Workspace
from tests._server import require_chromium


@pytest.fixture(scope="module")
def report(_seeded_root):
    return build_report(Workspace.open(_seeded_root["root"]), _seeded_root["run_id"], _seeded_root["test_set_id"])


@pytest.fixture(scope="module")
def pdf(report, tmp_path_factory):
    require_chromium("the PDF tests")  # the PDF is Chromium's print: no browser, no PDF to read
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    path.write_bytes(render_pdf(report))
    return path


def _text(path: Path) -> str:
    """The PDF's text layer, every page, read with PDFium (pypdfium2, a pinned requirement)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        out = " ".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    return re.sub(r"\s+", " ", out)


def test_pdf_text_has_every_headline_number_and_checklist_item(report, pdf):
    text = _text(pdf)
    for h in report["headline"]:
        for key in ("value", "low", "high"):
            if h.get(key) is not None:
                assert fmt(h[key], h["kind"]) in text, (h["key"], key)
    for item in ITEMS:
        assert f"{item.standard} {item.number}" in text
    assert TO_BE_COMPLETED in text and "Methods paragraph (ready to paste)" in text
    assert "page 1 of" in text  # Chromium's footer numbers the pages


def test_pdf_first_page_renders_and_names_no_url(pdf):
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        first = document[0].render(scale=40 / 72).to_pil()  # 40 dpi
    finally:
        document.close()
    image = np.asarray(first.convert("L"), dtype=float)
    assert image.std() > 5 and (image < 128).mean() > 0.002  # ink on the page, not a blank sheet
    raw = pdf.read_bytes()
    assert b"/URI" not in raw and not re.search(r"https?://", _text(pdf))


def test_checklist_fills_what_it_knows_and_never_guesses(report, _seeded_root):
    rows = {f"{r['standard']} {r['item']}": r for r in fill_checklist(report)}
    assert len(rows) == len(ITEMS)
    for item in ITEMS:
        row = rows[f"{item.standard} {item.number}"]
        assert row["known"] == (item.filler is not None and row["answer"] != TO_BE_COMPLETED)
        if item.filler is None:
            assert row["answer"] == TO_BE_COMPLETED
    assert report["model"]["checkpoint_sha256"] in rows["CLAIM 22"]["answer"]
    assert "to be completed by the authors" in rows["STARD 8"]["answer"]  # dates are not in the workspace
    separation = report["test_set"]["patient_separation"]
    assert separation["known"] and f"{separation['shared_patients']} of the" in rows["CLAIM 21"]["answer"]
    assert report["failures"]["cases"][0]["image_id"] in rows["CLAIM 37"]["answer"]
    # A bare predictions table knows no model: the model items go to the authors instead of being guessed.
    from core.infer.predictions import read_predictions, task_of

    frame, meta = read_predictions(_seeded_root["predictions_path"])
    bare = {f"{r['standard']} {r['item']}": r for r in fill_checklist(report_from_predictions(frame, task_of(meta)))}
    for key in ("CLAIM 22", "CLAIM 24", "CLAIM 25", "STARD 10a"):
        assert bare[key]["answer"] == TO_BE_COMPLETED and not bare[key]["known"]


def test_methods_paragraph_names_what_was_used(report):
    methods = report["methods"]
    paste = methods["paste"]
    assert f"{report['evaluation']['bootstrap']['resamples']} resamples of patients" in paste
    assert "DeLong" in paste and "Wilson" in paste and report["model"]["backbone"] in paste
    assert report["decision"]["included"] and "Decision-curve analysis" in paste
    assert any(r.startswith("Vickers AJ") for r in methods["references"])
    assert any(r.startswith("DeLong ER") for r in methods["references"])


def test_report_command_writes_pdf_html_and_rejects_other_suffixes(_seeded_root, tmp_path, capsys):
    from core.__main__ import main

    html = tmp_path / "r.html"
    assert main(["report", "--predictions", _seeded_root["predictions_path"], "--out", str(html),
                 "--bootstrap", "50"]) == 0
    assert "Reporting checklist" in html.read_text(encoding="utf-8")
    assert main(["report", "--predictions", _seeded_root["predictions_path"], "--out", str(tmp_path / "r.txt")]) == 2
    assert "can be written as .pdf, .html or .json" in capsys.readouterr().err
    require_chromium("the PDF tests")
    out = tmp_path / "r.pdf"
    assert main(["report", "--predictions", _seeded_root["predictions_path"], "--out", str(out),
                 "--bootstrap", "50"]) == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_mrmc_result_reaches_the_methods_paragraph_when_an_aided_study_exists(workspace):
    from core.readers.aided_study import create_aided_study, join_aided
    from core.report.html import render_html
    from core.report.methods import methods_section
    from core.report.mrmc_section import mrmc_section
    from tests.test_readers_aided_study import _end_washout, _images, _predictions, _read_all

    assert mrmc_section(workspace, "ts-demo") == {"included": False,
                                                  "reason": "no aided-reading (MRMC) study on this test set"}
    aided_id = create_aided_study(workspace, "ts-demo", _images(), "oct-kermany", _predictions(), washout_days=1.0,
                                  name="aid")
    assert not mrmc_section(workspace, "ts-demo")["included"]  # nobody has finished both sessions
    for reader, (before, after) in {"dr_a": ("NORMAL", "CNV"), "dr_b": ("DRUSEN", "DME")}.items():
        _read_all(workspace, join_aided(workspace, aided_id, reader), answer=before, confidence=3)
        _end_washout(workspace, aided_id, reader)
        _read_all(workspace, join_aided(workspace, aided_id, reader), answer=after, confidence=5)
    section = mrmc_section(workspace, "ts-demo")
    assert section["included"] and section["readers"] and section["cases"] == 12 and section["sentences"]
    report = {"evaluation": {"n_images": 12}, "options": {}, "mrmc": section}
    methods = methods_section(report)
    assert section["summary"] in methods["paste"] and "Obuchowski-Rockette" in methods["paste"]
    assert any(r.startswith("Obuchowski NA") for r in methods["references"])
    body = render_html({**report, "methods": methods})
    assert "Aided-reading study (MRMC)" in body and section["sentences"][0].replace("'", "&#x27;") in body


def test_a_threshold_of_zero_is_reported_as_zero_and_missing_bounds_are_not_called_zero_width(report):
    import copy

    from core.report.checklist import fill_checklist
    from core.report.format import interval
    from core.report.methods import methods_section

    zero = copy.deepcopy(report)
    zero["options"]["threshold"] = 0.0
    assert "score threshold of 0." in methods_section(zero)["paste"] and "of 0.5." not in methods_section(zero)["paste"]
    assert any("at least 0 (report threshold)" in row["answer"] for row in fill_checklist(zero))
    assert interval({"value": 0.5, "low": None, "high": None}, "proportion") == "50.0%"
    assert interval({"value": 1.0, "low": 1.0, "high": 1.0}, "proportion") == \
        "100.0% (no interval: the interval has zero width)"
    assert interval({"value": 0.5, "low": None, "high": None, "reason": "one class only"}, "proportion") == \
        "50.0% (no interval: one class only)"
