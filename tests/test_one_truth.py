"""One rule for turning scores into calls: on one run and test set, Performance, Penalties, the presentation and
the report open at the model's own operating point and agree on accuracy, sensitivity, specificity and weighted
error (core.metrics.threshold_in_use owns the threshold in use; the model's calls are its `predicted` column).
Also: the report's penalty sentence says "raises" when the rule raises the weighted error, and `train`'s test
numbers are the model's own calls, as `predict` makes them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.data.tasks import get_task
from core.metrics.model_operating_point import ModelOperatingPoint
from core.metrics.threshold_in_use import threshold_in_use
from core.report import build_report
from core.report.format import fmt
from core.report.model_card import model_card
from core.report.tables import penalty_rule_sentence
from core.store import Workspace
from dashboard import state
from dashboard.widgets import plain
from tests.apptest import open_page


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_pages_and_report_agree_at_the_models_own_point(own_seeded_workspace):
    ids = own_seeded_workspace
    ws = Workspace.open(ids["root"])
    point = ModelOperatingPoint.from_dict(model_card(ws, ids["run_id"])["operating_point"])
    assert point is not None  # the seeded model stores its own operating point
    report = build_report(ws, ids["run_id"], ids["test_set_id"], bootstrap=0)
    assert report["options"]["threshold"] == pytest.approx(point.threshold)
    assert report["options"]["threshold_label"] == f"model's point {point.threshold:.3f}"
    head = {h["key"]: h for h in report["headline"]}
    accuracy, sensitivity, specificity = (head[k]["value"] for k in ("accuracy", "sensitivity", "specificity"))
    weighted = head["weighted_error"]["value"]
    # The report's numbers are the model's calls: the predictions' `predicted` column.
    frame = ws.find_predictions(ids["run_id"], ids["test_set_id"])
    import pandas as pd

    from core.infer.predictions import read_predictions
    table, _ = read_predictions(frame["path"])
    assert accuracy == pytest.approx(float((table["predicted"].astype(str) == table["label"].astype(str)).mean()))
    assert weighted == pytest.approx(report["evaluation"]["penalty"]["predicted_calls_weighted_error"])
    del pd

    run = {"run_id": ids["run_id"], "test_set_id": ids["test_set_id"]}
    perf = open_page("../pages/performance.py", **run)
    assert perf.slider(key="perf_threshold").value == pytest.approx(point.threshold)  # opens at the model's point
    shown = _metrics(perf)
    assert shown["Accuracy"] == f"{accuracy:.1%}"
    assert shown["Sensitivity"] == f"{sensitivity:.1%}"
    assert shown["Specificity"] == f"{specificity:.1%}"
    assert shown["Weighted error"] == f"{weighted:.3f}"
    assert f"model's point {point.threshold:.3f}" in _texts(perf)

    penalties = open_page("../pages/penalties.py", **run)
    assert _metrics(penalties)["Weighted error (the model's calls)"] == f"{weighted:.3f}"

    present = open_page("../pages/present.py", **run)
    seen = []
    for _ in range(10):
        seen.append(_texts(present))
        if present.button(key="present_next").disabled:
            break
        present.button(key="present_next").click().run()
    slides = " ".join(seen)
    for key in ("accuracy", "sensitivity"):
        assert plain(f"{head[key]['label']} {fmt(head[key]['value'], head[key]['kind'])}") in slides, key
    assert plain(f"about {weighted * 1000:,.0f} penalty points per 1,000 scans") in slides
    # Compare, beside a second run (the same calls, stored without a model card): the seeded run's numbers at its own
    # point are the report's; its marker sits at its own threshold, the other run's at the default.
    import shutil

    seeded = ws.get_run(ids["run_id"])
    other = ws.create_run(config={**seeded["config"], "task": seeded["task"]}, name="Other run")
    ws.update_run(other, status="succeeded")
    path = ws.predictions_path(other, ids["test_set_id"])
    shutil.copyfile(frame["path"], path)
    ws.record_predictions(other, ids["test_set_id"], path, len(table))
    compare = open_page("../pages/compare.py", **run)
    assert not compare.exception
    summary = next(f.value for f in compare.dataframe if "weighted_error" in f.value.columns).set_index("run")
    mine = summary.loc[seeded["name"]]
    assert mine["threshold"] == f"model's point {point.threshold:.3f}"
    assert summary.loc["Other run", "threshold"] == "default threshold 0.500"
    for key, value in (("accuracy", accuracy), ("sensitivity", sensitivity), ("specificity", specificity),
                       ("weighted_error", weighted)):
        assert mine[key].split(" ")[0] == f"{value:.3f}", key
    roc = json.loads(compare.get("plotly_chart")[0].proto.spec)
    names = {trace.get("name") for trace in roc["data"]}
    assert f"{seeded['name']} at model's point {point.threshold:.3f}" in names
    report_page = open_page("../pages/report.py", **run)
    assert report_page.slider(key="report_threshold").value == pytest.approx(point.threshold, abs=0.0005)
    assert f"Threshold in use: model's point {point.threshold:.3f}" in _texts(report_page)
    assert f"{accuracy:.1%}" in _texts(report_page) + " ".join(str(m.value) for m in report_page.metric)
    # A run with no operating point opens at the default threshold, named as such, and nothing is remembered as a
    # choice of the user's.
    bare = open_page("../pages/performance.py", run_id=other, test_set_id=ids["test_set_id"])
    assert "Threshold in use: **default threshold 0.500**" in _texts(bare)
    assert state.THRESHOLD not in bare.session_state
    # A threshold the user picks is named as theirs (and then followed by every page: it is saved).
    perf.slider(key="perf_threshold").set_value(0.0).run()
    assert "your threshold 0.000" in _texts(perf)


def test_threshold_in_use_names_its_source():
    point = ModelOperatingPoint.from_dict({"view": "v", "positive": ["A"], "negative": ["B"], "threshold": 0.544,
                                           "rule": "youden", "target": None, "sensitivity": 0.9,
                                           "specificity": 0.8, "n_positive": 10, "n_negative": 10})
    assert threshold_in_use(point, None).label == "model's point 0.544"
    assert threshold_in_use(point, 0.5).label == "your threshold 0.500"
    assert threshold_in_use(point, 0.544).source == "model"
    assert threshold_in_use(None, None).label == "default threshold 0.500"
    assert threshold_in_use(point, None, view_name="other").source == "default"  # set on another view


def test_penalty_sentence_says_raises_when_the_rule_raises_the_weighted_error():
    body = {"changed_calls": 12, "improvement": 0.314 - 0.401, "argmax": {"weighted_error": 0.314},
            "min_penalty": {"weighted_error": 0.401}}
    text = penalty_rule_sentence(body)
    assert "raises the weighted error of the most probable class by 0.087" in text and "-0.087" not in text
    assert "(0.314 to 0.401)" in text
    assert "lowers the weighted error of the most probable class by 0.087" in penalty_rule_sentence(
        {**body, "improvement": 0.087, "min_penalty": {"weighted_error": 0.227}})


def test_report_interval_sits_beside_the_value_it_belongs_to(seeded_workspace):
    from core.report.tables import penalty_comparison_table

    ids = seeded_workspace
    report = build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"], bootstrap=50)
    table = penalty_comparison_table(report)
    body = report["evaluation"]["penalty"]
    interval = report["evaluation"]["bootstrap"]["intervals"]["weighted_error"]
    assert interval["value"] == pytest.approx(body["predicted_calls_weighted_error"])
    own = next(r for r in table.rows if r[0].startswith("The model's calls"))
    assert own[1] == fmt(body["predicted_calls_weighted_error"]) and own[2].startswith(fmt(interval["value"]))
    argmax = next(r for r in table.rows if r[0].startswith("Most probable class"))
    assert argmax[2] == "not resampled"


def test_train_test_scores_are_the_models_own_calls():
    """`train` printed accuracy of argmax calls where `predict` (the model's calls at its operating point) gave
    another: the test scores now use the calls `predict` makes."""
    from core.infer.predictions import model_calls
    from core.metrics.model_operating_point import choose_operating_point
    from core.train.scores import model_call_scores, score_predictions

    task = get_task("oct-kermany")
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(0, task.num_classes, n)
    logits = rng.normal(size=(n, task.num_classes)) + 1.5 * np.eye(task.num_classes)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    point = choose_operating_point(task, truth, probs, "sensitivity", 0.99)
    calls = model_calls(probs, task, point)
    assert (calls != np.asarray(task.classes, dtype=object)[probs.argmax(1)]).any()  # the two rules differ here
    argmax = score_predictions(task.kind, probs, truth, 0.3)
    scored = model_call_scores(task, task.kind, probs, truth, argmax, point)
    expected = float((calls == np.asarray(task.classes, dtype=object)[truth]).mean())
    assert scored["accuracy"] == pytest.approx(expected) and scored["accuracy"] != pytest.approx(argmax["accuracy"])
    assert scored["loss"] == 0.3 and scored["auroc"] == pytest.approx(argmax["auroc"])


def test_opening_experts_leaves_the_model_point_in_use(own_seeded_workspace):
    """The Experts page saved its slider's opening value 0.5 as the user's threshold, so Performance then said "your
    threshold 0.500" because Experts had been opened. A page records a threshold only when the user moves it, and
    opens at the threshold in use (one AppTest: the pages share this session's state)."""
    ids = own_seeded_workspace
    point = ModelOperatingPoint.from_dict(model_card(Workspace.open(ids["root"]), ids["run_id"])["operating_point"])
    assert point is not None and abs(point.threshold - 0.5) > 0.001  # else opening at 0.5 would hide the defect
    own = f"model's point {point.threshold:.3f}"
    at = open_page("../pages/experts.py", run_id=ids["run_id"], test_set_id=ids["test_set_id"])
    assert at.slider(key="experts_threshold").value == pytest.approx(point.threshold)
    assert f"Threshold in use: {own}" in _texts(at)
    assert state.THRESHOLD not in at.session_state
    at.switch_page("../pages/performance.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert own in _texts(at) and "your threshold" not in _texts(at)
    assert at.slider(key="perf_threshold").value == pytest.approx(point.threshold)
    # Another run picked on the page (the same calls, stored without a model card): the untouched slider follows the
    # threshold in use to the default rather than staying at the first run's point; still nothing is recorded.
    ws = Workspace.open(ids["root"])
    seeded, stored = ws.get_run(ids["run_id"]), ws.find_predictions(ids["run_id"], ids["test_set_id"])
    other = ws.create_run(config={**seeded["config"], "task": seeded["task"]}, name="Other run")
    ws.update_run(other, status="succeeded")
    path = ws.predictions_path(other, ids["test_set_id"])
    shutil.copyfile(stored["path"], path)
    ws.record_predictions(other, ids["test_set_id"], path, int(stored["n_rows"]))
    at.switch_page("../pages/experts.py").run()
    at.selectbox(key="experts_run").set_value(other).run()
    assert at.slider(key="experts_threshold").value == pytest.approx(0.5)
    assert "Threshold in use: default threshold 0.500" in _texts(at) and state.THRESHOLD not in at.session_state
    at.selectbox(key="experts_run").set_value(ids["run_id"]).run()
    assert at.slider(key="experts_threshold").value == pytest.approx(point.threshold)
    # Moving the Experts slider is a choice of the user's: recorded, named as theirs, and followed by Performance.
    at.slider(key="experts_threshold").set_value(0.3).run()
    assert at.session_state[state.THRESHOLD] == pytest.approx(0.3)
    assert "Threshold in use: your threshold 0.300" in _texts(at)
    at.switch_page("../pages/performance.py").run()
    assert "your threshold 0.300" in _texts(at)
