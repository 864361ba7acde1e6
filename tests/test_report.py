"""The stakeholder report: content from core.metrics/core.readers unchanged, labels, escaping, offline HTML."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from core.data.tasks import get_task, task_from_dict
from core.errors import InputError
from core.infer.predictions import read_predictions as read_predictions_file
from core.metrics import to_jsonable
from core.report import evaluate_predictions
from core.readers import compare_readers_to_model, list_readings, lr_table, weighted_error_table
from core.report import build_report, render_html, report_from_predictions, write_report
from core.report.referral_cost import DEFAULT_REFERRAL_NOTE
from core.store import Workspace

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SECTION_IDS = ("summary", "model", "test-set", "discrimination", "confusion", "calibration", "tiers", "penalties",
               "readers", "methods")


@pytest.fixture
def seeded(own_seeded_workspace):
    """A private copy of the seeded workspace (a test sets the active penalty matrix)."""
    ws = Workspace.open(own_seeded_workspace["root"])
    frame, meta = read_predictions_file(own_seeded_workspace["predictions_path"])
    return ws, own_seeded_workspace, frame, task_from_dict(meta["task"])


def _outside_plotly_bundle(html: str) -> str:
    """The document without the inline plotly.js library (whose source quotes URLs it never loads here)."""
    start = html.index("window.PlotlyConfig")
    start = html.rindex("<script", 0, start)
    bundle_start = html.index("<script", start + 1)
    end = html.index("</script>", bundle_start) + len("</script>")
    assert "plotly.js v" in html[bundle_start:end]
    return html[:start] + html[end:]


def test_report_has_every_section_and_says_synthetic_and_simulated(seeded):
    ws, ids, _, _ = seeded
    report = build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=50)
    assert report["labels"] == {"synthetic_data": True, "simulated_readers": True}
    assert any(n.startswith("SYNTHETIC DATA") for n in report["notices"])
    assert any(n.startswith("SIMULATED READERS") for n in report["notices"])
    assert report["product"]["version"] == __import__("core").__version__
    assert report["model"]["backbone"] == "test_efficientnet" and report["model"]["mode"] == "features"
    assert report["model"]["best_validation_metric"] is not None and report["model"]["seed"] == 0
    assert report["test_set"]["synthetic"] and report["test_set"]["n_images"] == len(read_predictions_file(
        ids["predictions_path"])[0])
    assert sum(report["test_set"]["class_counts"].values()) == report["test_set"]["n_images"]
    assert {h["key"] for h in report["headline"]} == {"accuracy", "sensitivity", "specificity", "weighted_error",
                                                      "urgent_auc"}
    methods = " ".join(report["methods"]["paragraphs"])
    for name in ("Wilson", "DeLong", "Simel", "Koopman", "bootstrap", "50 resamples of patients", "seed 0"):
        assert name in methods
    assert any("synthetic" in line for line in report["methods"]["limitations"])
    json.dumps(report, allow_nan=False)  # the JSON download is strict JSON

    html = render_html(report)
    for anchor in SECTION_IDS:
        assert f'<section id="{anchor}">' in html
    assert "SYNTHETIC DATA" in html and "SIMULATED READERS" in html and "SIMULATED-specialist" in html
    assert html.count('class="plotly-graph-div"') >= 8


def test_numbers_are_those_of_core_metrics_and_core_readers(seeded):
    ws, ids, frame, task = seeded
    penalty = np.ones((4, 4)) - np.eye(4)
    penalty[0, 3] = 6.0  # CNV called NORMAL
    report = build_report(ws, ids["run_id"], ids["test_set_id"], penalty=penalty, threshold=0.3, bootstrap=40,
                          seed=7)
    expected = evaluate_predictions(frame, task, penalty=penalty, threshold=0.3, bootstrap=40, seed=7)
    assert report["evaluation"] == expected
    headline = {h["key"]: h for h in report["headline"]}
    # The user's threshold 0.3 makes the headline's calls (one rule: core.infer.predictions.predicted_classes), so
    # accuracy and weighted error belong to the same calls as sensitivity and specificity.
    from core.infer.predictions import predicted_classes, probabilities
    from core.metrics import class_indices

    truth = class_indices(frame["label"], task.classes)
    calls = class_indices(predicted_classes(probabilities(frame, task), task, 0.3, task.default_view()), task.classes)
    assert report["options"]["threshold_label"] == "your threshold 0.300"
    assert headline["accuracy"]["value"] == pytest.approx(float((calls == truth).mean()))
    urgent_view = next(v for v in expected["binary_views"] if v["name"] == task.default_view().name)
    point = urgent_view["operating_points"]["threshold"]
    assert point["threshold"] == 0.3
    assert headline["sensitivity"]["value"] == point["sensitivity"]["value"]
    assert headline["specificity"]["high"] == point["specificity"]["high"]
    assert headline["weighted_error"]["value"] == pytest.approx(float(penalty[truth, calls].mean()))
    # At the model's own point (no threshold chosen) the headline is the model's calls, as the evaluation's.
    own = build_report(ws, ids["run_id"], ids["test_set_id"], penalty=penalty, bootstrap=40, seed=7)
    own_head = {h["key"]: h for h in own["headline"]}
    assert own_head["accuracy"]["value"] == own["evaluation"]["accuracy"]["value"]
    assert own_head["accuracy"]["low"] == own["evaluation"]["accuracy"]["low"]
    assert own_head["weighted_error"]["value"] == own["evaluation"]["penalty"]["predicted_calls_weighted_error"]
    assert own_head["weighted_error"]["low"] == own["evaluation"]["bootstrap"]["intervals"]["weighted_error"]["low"]
    assert headline["urgent_auc"]["value"] == expected["referral"]["urgent_auc"]["value"]
    assert headline["urgent_auc"]["method"] == "DeLong"
    assert report["penalty"]["matrix"] == penalty.tolist()

    readings = list_readings(ws, ids["test_set_id"])[["reader_id", "image_id", "label", "seconds"]]
    compare = compare_readers_to_model(readings, frame, task, task.default_view(), threshold=0.3, penalty=penalty)
    records = to_jsonable(compare.astype(object).where(compare.notna(), None).to_dict("records"))
    assert report["readers"]["comparison"] == records
    lr = lr_table(readings, frame, task, task.default_view(), 0.3)
    assert [r["value"] for r in report["readers"]["lr"]] == to_jsonable(
        lr["value"].astype(object).where(lr["value"].notna(), None).tolist())
    weighted = weighted_error_table(readings, frame, task, penalty=penalty)
    assert [r["weighted_error"] for r in report["readers"]["weighted_error"]] == weighted["weighted_error"].tolist()

    html = render_html(report)
    accuracy = headline["accuracy"]  # the card: the calls at the threshold in use
    assert f"{100 * accuracy['value']:.1f}%" in html
    assert f"95% CI {100 * accuracy['low']:.1f}% to {100 * accuracy['high']:.1f}%" in html


def test_penalty_defaults_to_the_workspace_active_matrix(seeded):
    ws, ids, frame, task = seeded
    matrix = (np.ones((4, 4)) - np.eye(4)) * 2.0
    ws.set_setting("active_penalty", {task.name: {"name": "double cost", "matrix": matrix.tolist()}})
    report = build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=0, include_readers=False)
    assert report["penalty"] == {"name": "double cost", "matrix": matrix.tolist(),
                                 # the default price of a referral follows the matrix in use: half its cheapest mistake
                                 "referral_cost": [1.0] * 4, "referral_cost_note": DEFAULT_REFERRAL_NOTE}
    assert report["evaluation"]["penalty"]["predicted_calls_weighted_error"] == pytest.approx(
        2.0 * (1.0 - report["evaluation"]["accuracy"]["value"]))
    weighted = next(h for h in report["headline"] if h["key"] == "weighted_error")
    assert weighted["low"] is None and "bootstrap" in weighted["reason"]
    assert report["readers"] is None and "SIMULATED READERS" not in render_html(report)


def test_user_text_is_escaped_in_the_html(seeded, workspace):
    _, ids, frame, _ = seeded
    # A fresh workspace holding the seeded predictions under hostile names (the shared one stays as it was).
    test_set_id = workspace.register_dataset(name=f"Clinic {EVIL} set", source=workspace.uploads_dir / "evil",
                                             task="oct-kermany", fingerprint="evil", n_images=len(frame),
                                             role="test_set")
    run_id = workspace.create_run(config={"task": "oct-kermany", "backbone": "test_efficientnet", "mode": "features"},
                                  name=f"Run {EVIL}")
    path = workspace.predictions_path(run_id, test_set_id)
    shutil.copyfile(ids["predictions_path"], path)
    workspace.record_predictions(run_id, test_set_id, path, len(frame))
    readings = pd.DataFrame({"reader_id": EVIL, "image_id": frame["image_id"], "label": frame["label"]})
    report = build_report(workspace, run_id, test_set_id, bootstrap=0, readings=readings)
    assert report["test_set"]["name"] == f"Clinic {EVIL} set" and report["readers"]["readers"] == [EVIL]
    assert report["model"]["run_name"] == f"Run {EVIL}"
    html = render_html(report)
    assert EVIL not in html
    assert f"Clinic {EVIL_ESCAPED} set" in html  # title, header and test-set table
    assert f"Run {EVIL_ESCAPED}" in html  # header and model card
    assert f"<th scope=\"row\">{EVIL_ESCAPED}</th>" in html  # the reader's row

    classes = ["<b>bold</b>", 'A&B "q"', EVIL]
    task = task_from_dict({"name": "custom <i>task</i>", "title": "Custom <i>task</i>", "modality": "OCT",
                           "kind": "multiclass", "classes": classes, "referral_levels": {classes[0]: "urgent"},
                           "binary_views": [{"name": "<u>first</u> vs rest", "positive": [classes[0]],
                                             "negative": classes[1:]}]})
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=30)
    custom = pd.DataFrame({"image_id": [f"img-{i}" for i in range(30)], "label": [classes[i % 3] for i in range(30)],
                           "patient_id": [f"p{i // 2}" for i in range(30)]})
    for j, name in enumerate(classes):
        custom[f"prob_{name}"] = probs[:, j]
    custom["predicted"] = [classes[k] for k in probs.argmax(axis=1)]
    html = render_html(report_from_predictions(custom, task, bootstrap=20, test_set={"id": "t", "name": EVIL}))
    for raw in (EVIL, "<b>bold</b>", "<u>first</u>", "<i>task</i>", 'A&B "q"'):
        assert raw not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "A&amp;B &quot;q&quot;" in html
    # Plotly draws a few tags in titles and legends: the figures carry the names escaped too.
    assert "ROC: \\u0026lt;u\\u0026gt;first" in html or "ROC: &lt;u&gt;first" in html


def test_html_is_self_contained_and_offline(seeded):
    ws, ids, _, _ = seeded
    html = render_html(build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=0))
    assert html.count("window.PlotlyConfig") == 1  # plotly.js inline exactly once
    own = _outside_plotly_bundle(html)
    assert not re.search(r"https?://", own), re.findall(r"https?://\S{0,40}", own)[:5]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", own, re.IGNORECASE)
    assert '"displaylogo": false' in own  # no "Produced with Plotly" link to plotly.com on the figures
    assert "<link" not in own and "@import" not in own
    assert "Content-Security-Policy" in own and "default-src 'none'" in own


def test_write_report_saves_html_and_json_in_the_reports_folder(seeded):
    ws, ids, _, _ = seeded
    report = build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=0)
    path = write_report(ws, report, name="../escape attempt")
    assert path.parent == ws.reports_dir and path.suffix == ".html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) == report
    default = write_report(ws, report)
    assert default.name.startswith("report-") and ids["test_set_id"] in default.name


def test_multilabel_report_without_penalties_or_readers():
    task = get_task("fundus-multilabel")
    rng = np.random.default_rng(1)
    n = 40
    truth = rng.random((n, len(task.classes))) < 0.3
    frame = pd.DataFrame({"image_id": [f"f{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
                          "label": ["|".join(c for c, t in zip(task.classes, row) if t) for row in truth]})
    for j, name in enumerate(task.classes):
        frame[f"prob_{name}"] = np.clip(truth[:, j] * 0.4 + rng.random(n) * 0.6, 0, 1)
        frame[f"true_{name}"] = truth[:, j].astype(int)
    report = report_from_predictions(frame, task, bootstrap=20)
    assert report["penalty"] is None and report["readers"] is None
    assert report["headline"][0]["key"] == "macro_auc"
    assert report["headline"][0]["value"] == report["evaluation"]["multilabel"]["macro_auc"]
    html = render_html(report)
    assert 'id="table-per_label"' in html and '<section id="penalties">' not in html


def test_bad_requests_raise_input_errors(seeded):
    ws, ids, frame, task = seeded
    with pytest.raises(InputError, match="no predictions"):
        build_report(ws, ids["run_id"], "no-such-test-set")
    with pytest.raises(InputError, match="threshold"):
        report_from_predictions(frame, task, threshold=1.5, bootstrap=0)
    with pytest.raises(InputError, match="likelihood-ratio"):
        report_from_predictions(frame, task, lr_ci="exact", bootstrap=0)
    with pytest.raises(InputError, match="4x4"):
        report_from_predictions(frame, task, penalty=np.ones((3, 3)), bootstrap=0)


def test_a_report_of_an_adapted_runs_calls_says_which_adaptation_made_them(seeded, tmp_path):
    """Calls from a run adapted without labels (the real adapt_unlabelled) are never reported without the sentence
    naming the adaptation: a notice (screen), the PDF's first page and the presentation's 'What is not known'."""
    import html as _html

    from core.infer.site_check import adaptation_text, read_card
    from core.report.slides import build_slides, slide_pages
    from tests._site_data import adapted_run, shifted_test_set

    ws, ids, _, _ = seeded
    site = shifted_test_set(ids, tmp_path / "site")
    source = build_report(ws, ids["run_id"], site, bootstrap=0, include_readers=False)
    assert not any(n.startswith("ADAPTED CALLS") for n in source["notices"])  # the source's calls are its own
    new_id = adapted_run(ids, site)
    report = build_report(ws, new_id, site, bootstrap=0, include_readers=False)
    sentence = adaptation_text(read_card(ws, new_id), ws.get_run(new_id)["name"])
    assert f"ADAPTED CALLS: {sentence}" in report["notices"]
    assert report["model"]["adaptation"]["source_run"] == ids["run_id"]
    page = render_html(report)
    title_page = page[page.index('<div class="title-page">'):page.index("<header")]  # the PDF's first page
    assert _html.escape(sentence, quote=True) in title_page
    assert f"<strong>ADAPTED CALLS</strong>{_html.escape(sentence, quote=True)}" in page  # the screen's notice
    slides = build_slides(report)
    unknown = slide_pages(slides, "unknown")  # the last slide(s): "What is not known", continued when it is long
    assert unknown and unknown[-1] is slides[-1]
    assert any(sentence in f.text for slide in unknown for f in slide.facts)
