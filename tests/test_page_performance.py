"""AppTest of the Performance page on the seeded workspace (and on synthetic ordinal / multi-label predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.store import Workspace
from tests._evaluation_data import build_workspace
from tests.apptest import open_page

PAGE = "../pages/performance.py"
HEADLINE = ("Accuracy", "Sensitivity", "Specificity",
            "Weighted error", "Urgent-referral AUC")


def _open(run_id: str | None = None, test_set_id: str | None = None, **state) -> AppTest:
    if run_id:
        state = {"run_id": run_id, "test_set_id": test_set_id, **state}
    return open_page(PAGE, **state)

def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _table(at: AppTest, *columns: str):
    """The first table holding these columns (read-only st.dataframe elements carry no key in AppTest)."""
    for frame in at.dataframe:
        value = frame.value
        if set(columns) <= set(value.columns):
            return value
    raise AssertionError(f"no table with columns {columns}")


def test_headline_cards_charts_and_tables_render(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # opening the page saves the selection: keep it out of the shared workspace
    at = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"])
    metrics = _metrics(at)
    assert all(label in metrics for label in HEADLINE)
    assert all(metrics[label] != "n/a" for label in HEADLINE)
    assert sum("95% CI" in c.value for c in at.caption) >= 5  # every headline card shows its interval
    charts = at.get("plotly_chart")
    assert len(charts) >= 9  # view + class ROC, view + class PR, confusion, tiers, distribution, PPV/NPV, reliability
    assert len(_table(at, "image_id", "p_called_class")) > 0  # the cases of the most common mistake
    assert len(_table(at, "referral level")) == 4
    table = _table(at, "class", "support", "sensitivity")
    assert list(table["class"]) == ["CNV", "DME", "DRUSEN", "NORMAL"]
    assert {"sensitivity", "specificity", "ppv", "npv", "auc", "support"} <= set(table.columns)
    assert "ECE (top label)" in metrics and "Brier score (all classes)" in metrics
    assert any("synthetic" in i.value for i in at.info)
    assert any(c.value.startswith("Training counts: the run's training split") for c in at.caption)


def test_threshold_moves_every_number_and_follows_the_user(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the threshold is saved: keep it out of the shared workspace
    at = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"])
    at.slider(key="perf_threshold").set_value(0.0).run()
    low = _metrics(at)
    cases_low = _table(at, "class", "support", "sensitivity")
    assert low["Sensitivity"] == "100.0%"
    assert low["Specificity"] == "0.0%"
    at.slider(key="perf_threshold").set_value(1.0).run()
    high = _metrics(at)
    assert high["Sensitivity"] == "0.0%"
    assert high["Specificity"] == "100.0%"
    # The class calls follow the threshold, so accuracy, weighted error and the per-class table move too.
    assert high["Weighted error"] != low["Weighted error"]
    assert not _table(at, "class", "support", "sensitivity").equals(cases_low)
    assert high["Urgent-referral AUC"] == low["Urgent-referral AUC"]  # threshold-free
    # The threshold is kept in the workspace: a new session (a reload) starts from it.
    from core.store.selection import saved_selection

    assert saved_selection(Workspace.open(seeded_workspace["root"]), "test-admin")["threshold"] == 1.0
    assert saved_selection(Workspace.open(seeded_workspace["root"]), "test-researcher") == {}  # each user's own
    again = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"])
    assert again.slider(key="perf_threshold").value == 1.0
    assert _metrics(again)["Specificity"] == "100.0%"


def test_target_sensitivity_sets_the_operating_point(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the page stores what it is given: keep it out of the shared workspace
    at = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"])
    at.radio(key="perf_rule").set_value("sensitivity").run()
    at.slider(key="perf_target_sens").set_value(1.0).run()
    assert not at.exception
    assert _metrics(at)["Sensitivity"] == "100.0%"
    assert any("Threshold chosen by sensitivity >= 1" in c.value for c in at.caption)
    at.radio(key="perf_rule").set_value("threshold").run()


def test_confusion_cell_lists_its_cases_with_thumbnails(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # the page stores what it is given: keep it out of the shared workspace
    at = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"])
    at.slider(key="perf_threshold").set_value(0.0).run()  # every case called urgent: cells off the diagonal fill
    at.selectbox(key="perf_cell_true").set_value("NORMAL").run()
    at.selectbox(key="perf_cell_called").set_value("CNV").run()
    cases = _table(at, "image_id", "p_called_class")
    assert len(cases) > 0 and set(cases["true_class"]) == {"NORMAL"} and set(cases["called_class"]) == {"CNV"}
    assert at.image and len(at.image[0].value) == min(len(cases), 12)
    assert list(at.image[0].captions) == cases["image_id"].head(12).tolist()
    assert at.session_state["confusion_cell"]["true"] == "NORMAL"
    at.slider(key="perf_threshold").set_value(0.5).run()


def test_penalty_matrix_in_use_drives_the_weighted_error(own_seeded_workspace):
    seeded_workspace = own_seeded_workspace  # opening the page saves the selection: keep it out of the shared workspace
    from core.data.tasks import get_task
    from core.metrics.penalties import Penalty
    from dashboard.state import PENALTY_STATE_KEY

    uniform = (np.ones((4, 4)) - np.eye(4)).tolist()
    # what the Penalties page leaves in the session
    in_use = Penalty.of(uniform, get_task("oct-kermany").classes, "uniform", source="edited")
    at = _open(seeded_workspace["run_id"], seeded_workspace["test_set_id"], **{PENALTY_STATE_KEY: {"oct-kermany": in_use}})
    metrics = _metrics(at)
    accuracy = float(metrics["Accuracy"].rstrip("%")) / 100
    assert float(metrics["Weighted error"]) == pytest.approx(1 - accuracy, abs=1e-3)


def test_ordinal_task_shows_weighted_kappa(tmp_path, monkeypatch):
    ids = build_workspace(tmp_path / "ws", task_name="dr-grading", n=400)
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = _open(ids["run_ids"][0], ids["test_set_id"])
    metrics = _metrics(at)
    assert "Quadratic weighted kappa" in metrics and metrics["Quadratic weighted kappa"] != "n/a"
    # Short card labels (none cut off); the view they are measured on is in the help text.
    sensitivity = next(m for m in at.metric if m.label == "Sensitivity")
    assert "referable (grade >= 2) vs not" in sensitivity.help.replace("\\", "")


def test_multilabel_task_shows_per_label_auroc(tmp_path, monkeypatch):
    ids = build_workspace(tmp_path / "ws", task_name="fundus-multilabel", n=400)
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    at = _open(ids["run_ids"][0], ids["test_set_id"])
    assert any("multi-label" in i.value for i in at.info)
    table = _table(at, "label", "positives")
    assert len(table) == 8 and "auc" in table.columns
    before = table["sensitivity"].tolist()
    at.slider(key="perf_threshold").set_value(0.9).run()
    assert _table(at, "label", "positives")["sensitivity"].tolist() != before
    assert len(at.get("plotly_chart")) == 2


def test_headline_numbers_and_methods_are_the_exported_reports(own_seeded_workspace):
    from core.infer import read_predictions
    from core.report import report_from_predictions

    seeded = own_seeded_workspace  # the threshold is saved: keep it out of the shared workspace
    at = _open(seeded["run_id"], seeded["test_set_id"])
    at.slider(key="perf_threshold").set_value(0.5).run()
    # One rule for calls: at a threshold the user chose, the page and the report both call at it (the default "Class
    # calls" follow the operating point), so accuracy and weighted error agree with sensitivity's threshold.
    frame, _ = read_predictions(seeded["predictions_path"])
    report = report_from_predictions(frame, "oct-kermany", threshold=0.5)  # default resamples and seed
    headline = {h["key"]: h for h in report["headline"]}
    metrics = _metrics(at)
    captions = [c.value for c in at.caption]
    for key, label, fmt in (("accuracy", "Accuracy", "{:.1%}"), ("weighted_error", "Weighted error", "{:.3f}"),
                            ("urgent_auc", "Urgent-referral AUC", "{:.3f}"),
                            ("sensitivity", "Sensitivity", "{:.1%}")):
        item = headline[key]
        assert metrics[label] == fmt.format(item["value"])
        assert f"95% CI {fmt.format(item['low'])} to {fmt.format(item['high'])}" in captions
    methods = next(c for c in captions if c.startswith("Interval methods"))
    assert "bootstrap percentile" in headline["weighted_error"]["method"]
    for item in headline.values():
        assert item["method"] in methods.replace("\\", "")


def test_operating_point_from_training_is_shown_and_can_be_applied(own_seeded_workspace):
    import json

    ws = Workspace.open(own_seeded_workspace["root"])
    run = ws.get_run(own_seeded_workspace["run_id"])
    card = json.loads((Path(run["run_dir"]) / "checkpoint" / "model_card.json").read_text())
    threshold = card["operating_point"]["threshold"]
    at = _open(own_seeded_workspace["run_id"], own_seeded_workspace["test_set_id"])
    notes = [c.value for c in at.caption if "Operating point from training" in c.value]
    assert notes and f"{threshold:.3f}" in notes[0]
    at.button(key="perf_use_model_point").click().run()
    assert not at.exception
    assert at.radio(key="perf_rule").value == "threshold"
    assert at.slider(key="perf_threshold").value == pytest.approx(threshold)


def test_damaged_model_card_is_named_and_the_page_still_evaluates(own_seeded_workspace):
    ws = Workspace.open(own_seeded_workspace["root"])
    card = Path(ws.get_run(own_seeded_workspace["run_id"])["run_dir"]) / "checkpoint" / "model_card.json"
    intact = card.read_text()  # the copy's registry points at the shared run folder: put the card back after
    card.write_text('{"backbone": "test_efficientnet", ')  # cut short, as by a full disk
    try:
        at = _open(own_seeded_workspace["run_id"], own_seeded_workspace["test_set_id"])
    finally:
        card.write_text(intact)
    assert any("model card cannot be read" in e.value for e in at.error)
    assert any("model_card.json: not a readable JSON model card" in c.value for c in at.code)
    assert any("Operating point from training: none stored" in c.value for c in at.caption)
    assert all(_metrics(at)[label] != "n/a" for label in HEADLINE)


def test_site_recalibration_makes_a_new_run_from_the_page(own_seeded_workspace):
    import hashlib

    ws = Workspace.open(own_seeded_workspace["root"])
    run = ws.get_run(own_seeded_workspace["run_id"])
    card_path = Path(run["run_dir"]) / "checkpoint" / "model_card.json"
    before = hashlib.sha256(card_path.read_bytes()).hexdigest()
    runs_before = {r["id"] for r in ws.list_runs()}
    at = _open(own_seeded_workspace["run_id"], own_seeded_workspace["test_set_id"])
    at.number_input(key="perf_recal_size").set_value(10)
    at.button(key="perf_recal_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = [r for r in ws.list_runs() if r["id"] not in runs_before]
    assert len(new) == 1 and new[0]["status"] == "succeeded" and "recalibrated" in new[0]["name"]
    assert any("this run is unchanged" in s.value for s in at.success)
    assert list(_table(at, "images", "sensitivity", "specificity")[""].str.split().str[0]) == ["before", "after"]
    assert hashlib.sha256(card_path.read_bytes()).hexdigest() == before


def test_runs_with_the_same_name_are_told_apart_and_archived_ones_are_not_offered(tmp_path, monkeypatch):
    from core.store import Workspace
    from core.store.lifecycle import archive_run

    ids = build_workspace(tmp_path / "ws", n=200, runs=[{"name": "lite0", "separation": 2.0},
                                                        {"name": "lite0", "separation": 1.0},
                                                        {"name": "old try", "separation": 0.5}])
    monkeypatch.setenv("CORE_WORKSPACE", ids["root"])
    archive_run(Workspace.open(ids["root"]), ids["run_ids"][2])
    at = _open(ids["run_ids"][0], ids["test_set_id"])
    labels = at.selectbox(key="perf_run").options
    assert len(labels) == 2 and len(set(labels)) == 2, labels  # the archived run is not offered
    assert all(label.startswith("lite0 (") for label in labels)
    assert {ids["run_ids"][0][-4:], ids["run_ids"][1][-4:]} == {label.rsplit("...", 1)[1][:4] for label in labels}


# -- the site check: a shifted test set, both remedies, and the adaptation behind the calls ---------------------
def _warning(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "looks different from the training images" in w.value]


def test_a_shifted_test_set_is_flagged_with_both_remedies_and_adapting_says_so_everywhere(own_seeded_workspace,
                                                                                           tmp_path):
    from core.infer.site_check import adaptation_text, read_card
    from dashboard.widgets import plain
    from tests._site_data import shifted_test_set

    seeded = own_seeded_workspace
    site = shifted_test_set(seeded, tmp_path / "site")
    ws = Workspace.open(seeded["root"])
    at = _open(seeded["run_id"], site)
    warning = _warning(at)
    assert warning and "stored threshold was chosen on the training site" in warning[0]
    assert "128 x 128" in warning[0]  # the audit's reason, in plain words
    # (a) label-free adaptation and (b) the labelled re-fit with its precision at N = 20, 40, 80, side by side.
    assert "perf_site_adapt" in [b.key for b in at.button] and "perf_recal_go" in [b.key for b in at.button]
    precision = _table(at, "labelled images", "sensitivity ±", "specificity ±")
    assert list(precision["labelled images"]) == [20, 40, 80]
    assert any("labelled re-fit is shown above" in c.value for c in at.caption)  # not twice on the page

    runs_before = {r["id"] for r in ws.list_runs()}
    at.button(key="perf_site_adapt").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = [r for r in ws.list_runs() if r["id"] not in runs_before]
    assert len(new) == 1 and "adapted without labels" in new[0]["name"]
    assert at.selectbox(key="perf_run").value == new[0]["id"]  # the adapted run is selected...
    assert ws.find_predictions(new[0]["id"], site) is not None  # ...with its predictions on the site
    sentence = adaptation_text(read_card(ws, new[0]["id"]), new[0]["name"])
    assert sentence.startswith(f"Calls from run {new[0]['name']}, adapted without labels to test set {site}")
    # The calls on the page say which adaptation made them: a notice, the operating-point note, the calls rule.
    assert any(i.value == plain(sentence) for i in at.info)
    assert any(plain(sentence) in c.value for c in at.caption)
    assert any("Class calls:" in c.value and "adapted run" in c.value for c in at.caption)


def test_an_unshifted_test_set_is_not_flagged(own_seeded_workspace):
    from tests._site_data import audit_against_training

    seeded = own_seeded_workspace
    audit = audit_against_training(Workspace.open(seeded["root"]), seeded["test_set_id"], seeded["dataset_id"])
    assert not audit["shift"]["flagged"]
    at = _open(seeded["run_id"], seeded["test_set_id"])
    assert not _warning(at)
    assert "perf_site_adapt" not in [b.key for b in at.button]
    assert any(c.value.startswith("Site check: this test set does not look shifted") for c in at.caption)
    assert not any("adapted without labels" in i.value for i in at.info)  # a plain run's calls claim nothing
