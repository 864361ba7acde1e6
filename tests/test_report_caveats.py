"""Every caveat the app knows (shift, duplicates, patients also in training, degenerate intervals...) is on the
report's first page (HTML and the PDF's first page) and on the presentation's "What is not known" slide: one list,
one owner (core.report.caveats)."""

from __future__ import annotations

import html as _html
import json
import re

from core.audit.jobs import FULL, registered_key
from core.audit.report import audit_path
from core.report import build_report
from core.report.caveats import report_caveats
from core.report.html import render_html
from core.report.model_card import model_card
from core.report.slides import build_slides, slide_pages
from core.store import Workspace


def _store_flagged_audit(ws: Workspace, test_set_id: str, training_id: str) -> None:
    """The audit as core.audit.report.cached_audit stores it, for a test set that is shifted, holds 6 extra exact
    copies (one group of 7) and 3 images identical to training images, and shares 4 patients with training."""
    group = [f"dup{i}" for i in range(7)]
    audit = {"version": 1, "dataset": {"id": test_set_id}, "against": {"id": training_id},
             "exact_duplicates": {"method": "sha256", "groups": [group], "n_images_in_groups": 7,
                                  "n_extra_copies": 6,
                                  "across": [{"data": ["a1", "a2"], "against": ["t1"]},
                                             {"data": ["a3"], "against": ["t2"]}]},
             "near_duplicates": {"groups": [], "across": []},
             "patient_leakage": {"patient_ids_known": True, "n_patients": 50, "within": [],
                                 "across": [{"patient_id": f"p{i}", "data": [], "against": []} for i in range(4)]},
             "shift": {"flagged": True, "reasons": ["domain classifier AUC 1.00 (at least 0.70 flags shift)"]},
             "label_issues": None, "options": {"features": True}}
    path = audit_path(ws, registered_key(ws, test_set_id, training_id, None, FULL))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(audit))


def _first_page_text(page: str) -> str:
    """The text of the HTML report's printed first page (the title page) and of its on-screen top (banner and
    notices, before the table of contents)."""
    start = page.index("<body>")
    top = page[start:page.index("<nav class=\"toc\">")]
    return re.sub(r"\s+", " ", _html.unescape(re.sub(r"<[^>]+>", " ", top)))


def _flagged_report(ids: dict) -> dict:
    ws = Workspace.open(ids["root"])
    training_id = model_card(ws, ids["run_id"])["training_dataset_id"]
    _store_flagged_audit(ws, ids["test_set_id"], training_id)
    return build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=0)


def test_first_page_and_slide_show_every_caveat_of_a_flagged_audit(own_seeded_workspace):
    report = _flagged_report(own_seeded_workspace)
    caveats = report_caveats(report)
    keys = [c.key for c in caveats]
    for key in ("shift", "duplicates", "seen_images", "patient_overlap", "synthetic", "degenerate_intervals"):
        assert key in keys, keys
    texts = {c.key: c.text for c in caveats}
    assert "domain classifier AUC 1.00" in texts["shift"]
    assert texts["duplicates"].startswith("The audit found 6 exact duplicate images in the test set")
    assert texts["seen_images"].startswith("3 test images are pixel for pixel identical")
    assert texts["patient_overlap"].startswith("4 patients of the test set also have images in the training data")
    assert "Weighted error" in texts["degenerate_intervals"]  # no bootstrap: its interval is not computed
    assert report["caveats"] == [c.to_dict() for c in caveats]
    assert report["notices"] == [c.notice for c in caveats]

    first = _first_page_text(render_html(report))
    for c in caveats:
        assert re.sub(r"\s+", " ", c.text) in first, c.key
    assert "What is not known" in first

    # the "What is not known" slide and its continuations ("(1 of 2)": every slide fits a 1366 x 768 screen)
    unknown = [f for slide in slide_pages(build_slides(report), "unknown") for f in slide.facts]
    assert [f.text for f in unknown[:len(caveats)]] == [c.text for c in caveats]


def test_no_audit_says_shift_was_not_checked_on_the_first_page(seeded_workspace):
    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"], bootstrap=0)
    assert report["audit"] is None
    first = _first_page_text(render_html(report))
    assert "has not been checked (no dataset audit was run)" in first
    assert not any(c["key"] in ("duplicates", "patient_overlap") for c in report["caveats"])


def test_pdf_first_page_has_every_caveat(own_seeded_workspace):
    from core.report.pdf import render_pdf
    from tests._server import require_chromium

    require_chromium("the PDF caveat test")
    import pypdfium2 as pdfium

    report = _flagged_report(own_seeded_workspace)
    document = pdfium.PdfDocument(render_pdf(report))
    try:
        first = re.sub(r"\s+", " ", document[0].get_textpage().get_text_range())
    finally:
        document.close()
    for c in report["caveats"]:
        assert re.sub(r"\s+", " ", c["text"])[:60] in first, c["key"]
