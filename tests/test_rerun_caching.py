"""A threshold move, a penalty edit or a reader's answer reruns only what it changes: the widget sits in a fragment
(st.fragment), so the browser reruns that fragment alone, and nothing that does not move with it is rebuilt; a fragment
rerun, which skips the page's sign-in gate, still stores nothing for a session signed out meanwhile. Driven like the
browser (tests/_rerun.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests._rerun import BrowserReruns
from tests.apptest import signed_in_app


def _counting(monkeypatch, calls: Counter, module, name: str) -> None:
    """Count calls of `module.name` (left alone when the module has no such name)."""
    original = getattr(module, name, None)
    if original is None:
        return

    def counted(*args, **kwargs):
        calls[f"{module.__name__}.{name}"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def _page(seeded: dict, page: str) -> BrowserReruns:
    at = signed_in_app(run_id=seeded["run_id"], test_set_id=seeded["test_set_id"])
    at.run()
    at.switch_page(page)
    browser = BrowserReruns(at)
    browser.full_run()
    assert not at.exception, [e.value for e in at.exception]
    return browser


def test_a_threshold_move_rebuilds_nothing_threshold_free(own_seeded_workspace, monkeypatch):
    import dashboard.decision_ui as decision_ui
    import dashboard.evaluation_figures as evaluation_figures
    import dashboard.evaluation_ui as evaluation_ui
    import dashboard.performance_sections as performance_sections

    browser = _page(own_seeded_workspace, "../pages/performance.py")
    slider = browser.at.slider(key="perf_threshold")
    assert browser.fragment_of(slider) is not None  # the threshold lives in a fragment: the browser reruns it alone

    calls: Counter = Counter()
    # Threshold-free builders and the page's own start (the run x test-set choice): none may run on a move.
    for module, name in [(evaluation_figures, "roc_figure"), (evaluation_figures, "pr_figure"),
                         (evaluation_figures, "class_distribution_figure"), (evaluation_figures, "reliability_figure"),
                         (performance_sections, "roc_figure"), (performance_sections, "pr_figure"),
                         (performance_sections, "class_distribution_figure"), (performance_sections, "run_model_card"),
                         (decision_ui, "decision_curve"), (decision_ui, "decision_curve_figure"),
                         (evaluation_ui, "select_evaluation")]:
        _counting(monkeypatch, calls, module, name)

    slider.set_value(0.0)
    low = {m.label: m.value for m in browser.interact(slider).metric}
    browser.at.slider(key="perf_threshold").set_value(1.0)
    drawn = browser.interact(browser.at.slider(key="perf_threshold"))
    high = {m.label: m.value for m in drawn.metric}

    assert not calls, dict(calls)
    # ... while every number that moves with the threshold did move.
    assert (low["Sensitivity"], low["Specificity"]) == ("100.0%", "0.0%")
    assert (high["Sensitivity"], high["Specificity"]) == ("0.0%", "100.0%")
    assert high["Weighted error"] != low["Weighted error"]
    assert high["Urgent-referral AUC"] == low["Urgent-referral AUC"]
    drawn_charts = {chart.key for chart in drawn.get("plotly_chart") if getattr(chart, "key", None)}
    assert "perf_roc_classes" not in drawn_charts and "perf_dca_chart" not in drawn_charts


def test_a_penalty_edit_reruns_the_editor_and_its_effect_only(own_seeded_workspace, monkeypatch):
    import dashboard.evaluation_ui as evaluation_ui

    browser = _page(own_seeded_workspace, "../pages/penalties.py")
    editor = browser.at.data_editor[0]
    assert browser.fragment_of(editor) is not None
    before = {m.label: m.value for m in browser.at.metric}["Weighted error (argmax)"]

    from core import readers
    from dashboard import evaluation_figures

    calls: Counter = Counter()
    _counting(monkeypatch, calls, evaluation_ui, "select_evaluation")  # the page's start: run x test-set choice
    # What no penalty moves: the readings (read once per readings version) and the argmax confusion figure.
    _counting(monkeypatch, calls, readers, "list_readings")
    _counting(monkeypatch, calls, evaluation_figures, "confusion_figure")
    column = "NORMAL" if editor.value.index[0] != "NORMAL" else "CNV"
    browser.at.session_state[editor.key] = {"edited_rows": {0: {column: 9.0}}, "added_rows": [], "deleted_rows": []}
    drawn = browser.interact(editor)

    assert not calls, dict(calls)
    after = {m.label: m.value for m in drawn.metric}["Weighted error (argmax)"]
    assert browser.at.session_state["penalty_matrix"]["oct-kermany"].rows[0][
        list(editor.value.columns).index(column)] == pytest.approx(9.0)
    assert float(after) >= float(before)  # a dearer mistake never lowers the weighted error


def test_a_threshold_move_saves_the_movers_selection_only(own_seeded_workspace):
    from core.store import Workspace
    from core.store.selection import save_selection, saved_selection

    browser = _page(own_seeded_workspace, "../pages/performance.py")
    browser.at.slider(key="perf_threshold").set_value(0.25)
    browser.interact(browser.at.slider(key="perf_threshold"))
    ws = Workspace.open(own_seeded_workspace["root"])
    assert saved_selection(ws, "test-admin")["threshold"] == 0.25
    assert saved_selection(ws, "test-researcher") == {}
    # Another user's page opens at the threshold in use for them (the model's point), not at this user's move.
    other = signed_in_app("researcher", run_id=own_seeded_workspace["run_id"],
                          test_set_id=own_seeded_workspace["test_set_id"])
    other.run()
    other.switch_page("../pages/performance.py").run()
    assert other.slider(key="perf_threshold").value != 0.25
    assert not save_selection(ws, "test-admin", {"threshold": 0.25})  # unchanged: nothing written
    assert save_selection(ws, "test-admin", {"threshold": 0.5}) and saved_selection(ws, "test-admin")["threshold"] == 0.5


def _study(seeded: dict, reader: str) -> tuple:
    """A 6-image study on the seeded test set with `reader` joined (a signed-in reader then lands on its grading
    screen); returns (workspace, study id)."""
    from core.data.ingest import load_registered
    from core.readers import create_study, join_study
    from core.store import Workspace

    ws = Workspace.open(seeded["root"])
    test_set = load_registered(ws, seeded["test_set_id"])
    study_id = create_study(ws, seeded["test_set_id"], test_set, test_set.task, subset_size=6, seed=7, name=reader)
    join_study(ws, study_id, reader)
    return ws, study_id


def _answers(ws, study_id: str) -> list[tuple]:
    with ws.connect() as con:
        return [tuple(r) for r in con.execute("SELECT reader_id, image_id, label, changes FROM answers WHERE "
                                              "study_id=?", (study_id,))]


def _grading_screen(reader: str, **session_state) -> BrowserReruns:
    at = signed_in_app("reader", user=reader, **session_state)
    browser = BrowserReruns(at)
    browser.full_run()
    assert not at.exception, [e.value for e in at.exception]
    return browser


def _caption(tree) -> str:
    (image,) = tree.get("image")
    return image.captions[0]


def test_an_answer_reruns_the_grading_screen_alone_stored_once_and_the_next_case_shows(own_seeded_workspace,
                                                                                       monkeypatch):
    from core import readers
    from dashboard import common

    ws, study_id = _study(own_seeded_workspace, "frag-reader")
    browser = _grading_screen("frag-reader")
    assert _caption(browser.at) == "Image 1 of 6"
    button = browser.at.button(key="rs_class_2")
    assert browser.fragment_of(button) is not None  # the answer buttons live in the grading fragment

    calls: Counter = Counter()
    for module, name in [(readers, "get_study"), (common, "ensure_demo_ui"), (common, "restore_selection")]:
        _counting(monkeypatch, calls, module, name)  # the page around the screen (and the app's start) stays put
    button.click()
    drawn = browser.interact(button)

    assert not calls, dict(calls)
    classes = readers.get_study(ws, study_id).task.classes
    first = readers.item_at(ws, study_id, "frag-reader", 1).image_id
    assert _answers(ws, study_id) == [("frag-reader", first, classes[2], 0)]  # stored once
    assert _caption(drawn) == "Image 2 of 6"  # ... and the next case is on the screen
    assert "1 of 6 images graded" in [p.proto.text for p in drawn.get("progress")]
    assert f"Last answer saved: {classes[2]}" in [c.value for c in drawn.caption]

    # Later reruns (the whole page, then the screen alone after a zoom) store nothing again and stay on the next case.
    assert _caption(browser.full_run()) == "Image 2 of 6"
    browser.at.slider(key="rs_zoom").set_value(2.0)
    drawn = browser.interact(browser.at.slider(key="rs_zoom"))
    assert _answers(ws, study_id) == [("frag-reader", first, classes[2], 0)]
    assert _caption(drawn) == "Image 2 of 6"


def _signed_in_for_real(ws, user: str, role: str) -> dict:
    """A real sign-in (user, session token) as the sign-in form makes it: the session state a browser holds."""
    from core.store.access import SHELL, Actor, set_user, start_session
    from dashboard import state

    set_user(ws, user, role, "a-long-password-1", actor=SHELL)
    return {state.SESSION_TOKEN: start_session(ws, Actor(user, role)), state.SESSION_WORKSPACE: str(ws.root)}


def _sign_in_form_shown(tree) -> bool:
    """The whole app reran to the sign-in gate's form, and nothing of the page is drawn."""
    keys = {t.key for t in tree.text_input}
    return bool(keys & {"sign_in_name", "first_admin_name"}) and not tree.get("image") and not tree.data_editor


def test_a_signed_out_readers_answer_from_the_fragment_is_not_stored(own_seeded_workspace):
    from core.store.access import READER, end_session
    from dashboard import state

    ws, study_id = _study(own_seeded_workspace, "gone-reader")
    session = _signed_in_for_real(ws, "gone-reader", READER)
    browser = _grading_screen("gone-reader", **session)
    assert _caption(browser.at) == "Image 1 of 6"
    end_session(ws, session[state.SESSION_TOKEN])  # signed out in another tab (or the sign-in expired)

    button = browser.at.button(key="rs_class_0")
    button.click()
    drawn = browser.interact(button)

    assert _answers(ws, study_id) == []
    assert _sign_in_form_shown(drawn)
    assert state.ACTOR not in browser.at.session_state


def test_a_removed_researchers_penalty_edit_from_the_fragment_is_not_stored(own_seeded_workspace):
    from core.data.tasks import get_task
    from core.report.active_penalty import saved_penalty
    from core.store import Workspace
    from core.store.access import RESEARCHER, SHELL, remove_user

    ws = Workspace.open(own_seeded_workspace["root"])
    session = _signed_in_for_real(ws, "gone-researcher", RESEARCHER)
    at = signed_in_app(RESEARCHER, user="gone-researcher", run_id=own_seeded_workspace["run_id"],
                       test_set_id=own_seeded_workspace["test_set_id"], **session)
    at.run()
    at.switch_page("../pages/penalties.py")
    browser = BrowserReruns(at)
    browser.full_run()
    assert not at.exception, [e.value for e in at.exception]
    task = get_task("oct-kermany")
    before = saved_penalty(ws, task)
    remove_user(ws, "gone-researcher", actor=SHELL)  # an admin took the account away

    editor = browser.at.data_editor[0]
    browser.at.session_state[editor.key] = {"edited_rows": {0: {"NORMAL": 9.0}}, "added_rows": [], "deleted_rows": []}
    drawn = browser.interact(editor)

    after = saved_penalty(ws, task)
    assert (after and after.rows) == (before and before.rows)  # the matrix in use is not the edited one
    assert _sign_in_form_shown(drawn)  # (the form for a first admin: the workspace has no user left)
