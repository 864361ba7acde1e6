"""The report of a model trained elsewhere (an ONNX file registered by import-model, a table of imported scores)
says what its card or its file tells and that its training is not recorded here: never "None" or "nan". A run
trained here keeps its training details."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from core.report import build_report
from core.report.checklist import fill_checklist
from core.report.html import render_html
from core.report.model_card import TRAINED_ELSEWHERE, elsewhere_sentence, trained_elsewhere
from core.report.slides import build_slides
from core.store import Workspace
from core.store.integrity import file_sha256
from tests.test_external_models import ONNX_RUN_NAME, exchange, onnx_predictions  # noqa: F401 (fixtures)
from tests.test_imported_predictions import imported_workspace  # noqa: F401 (fixture)

BLANK = re.compile(r"\b(None|nan|NaN|null)\b")


class _Text(HTMLParser):
    """The words a reader sees: every text node outside <script> and <style>."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def _shown(report: dict) -> str:
    """The report's HTML text and every slide's words, one space between runs of white space."""
    parser = _Text()
    parser.feed(render_html(report))
    slides = [t for s in build_slides(report) for f in s.facts for t in (s.title, f.text, f.explanation)]
    return re.sub(r"\s+", " ", " ".join(parser.parts + slides))


def _blanks(text: str) -> list[str]:
    return [text[max(m.start() - 80, 0):m.end() + 40] for m in BLANK.finditer(text)]


def _rows(report: dict) -> dict[str, str]:
    return {f"{r['standard']} {r['item']}": r["answer"] for r in fill_checklist(report)}


def test_the_report_of_an_onnx_run_says_what_its_card_knows_and_never_none(exchange, onnx_predictions):  # noqa: F811
    ws = Workspace.open(exchange["root"])
    run = ws.get_run(onnx_predictions["run_id"])
    report = build_report(ws, onnx_predictions["run_id"], onnx_predictions["test_set_id"], bootstrap=20)
    assert trained_elsewhere(run) and trained_elsewhere(report["model"]) and trained_elsewhere(report)
    text = _shown(report)
    assert not _blanks(text), _blanks(text)
    assert TRAINED_ELSEWHERE in text
    # What the card and the file say, each read here from the run's own folder, not from the report.
    checkpoint = Path(run["run_dir"]) / "checkpoint"
    sha = file_sha256(checkpoint / "model.onnx")
    card = json.loads((checkpoint / "model_card.json").read_text())
    height, width = card["external"]["input_size"]
    for known in (f"{ONNX_RUN_NAME} ({run['id']})", sha, f"{height} x {width} px, 3 channels",
                  ", ".join(card["external"]["output_classes"]), card["external"]["output"],
                  f"framing {card['preprocessing']['framing']}", f"by {card['imported']['by']}"):
        assert known in text, known
    rows = _rows(report)
    assert rows["CLAIM 25"] == rows["CLAIM 26"] == elsewhere_sentence()
    assert sha in rows["CLAIM 22"] and TRAINED_ELSEWHERE in rows["CLAIM 20"]
    assert "trained elsewhere" in rows["CLAIM 21"]
    paste = report["methods"]["paste"]
    assert TRAINED_ELSEWHERE in paste and sha in paste and "was trained on" not in paste


def test_the_report_of_imported_scores_names_its_file_and_never_none(imported_workspace):  # noqa: F811
    ws = Workspace.open(imported_workspace["root"])
    report = build_report(ws, imported_workspace["imported_run"], imported_workspace["test_set_id"], bootstrap=20)
    assert report["model"] == {} and trained_elsewhere(ws.get_run(imported_workspace["imported_run"]))
    assert trained_elsewhere(report)
    text = _shown(report)
    assert not _blanks(text), _blanks(text)
    source = report["scores_source"]
    assert TRAINED_ELSEWHERE in text and source["sha256"] in text and "Vendor scores" in text
    rows = _rows(report)
    assert rows["CLAIM 25"] == elsewhere_sentence() and source["sha256"] in rows["CLAIM 22"]
    assert "SHA-256" not in rows["CLAIM 24"]  # the scores file is not the model's weights
    assert TRAINED_ELSEWHERE in report["methods"]["paste"]


def test_a_run_trained_here_keeps_its_training_details(exchange):  # noqa: F811
    ws = Workspace.open(exchange["root"])
    run = ws.get_run(exchange["run_id"])
    config = json.loads((Path(run["run_dir"]) / "config.json").read_text())
    report = build_report(ws, exchange["run_id"], exchange["test_set_id"], bootstrap=0)
    assert not trained_elsewhere(run) and not trained_elsewhere(report)
    text = _shown(report)
    assert not _blanks(text), _blanks(text)
    assert TRAINED_ELSEWHERE not in text and "trained elsewhere" not in text.lower()
    rows = _rows(report)
    assert f"learning rate {config['lr']:g}" in rows["CLAIM 25"] and f"seed {config['seed']}" in rows["CLAIM 25"]
    assert rows["CLAIM 26"].startswith("Best epoch by validation")
    assert f"“{report['model']['training_dataset']}”" in rows["CLAIM 20"]
    assert "was trained on" in report["methods"]["paste"] and f"seed {config['seed']}" in report["methods"]["paste"]
