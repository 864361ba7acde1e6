"""Weighted error under the Kermany penalty matrix, the penalty-minimising decision, and penalty files."""

import json

import numpy as np
import pytest

from core.data.tasks import get_task
from core.errors import InputError
from core.metrics import (compare_decision_rules, decide, decision_confusion, expected_penalty,
                          load_penalty_matrix, weighted_error)

OCT = get_task("oct-kermany")  # classes CNV, DME, DRUSEN, NORMAL


def test_task_matrix_is_the_papers_matrix():
    # Kermany et al. 2018, printed in NORMAL, DRUSEN, CNV, DME order.
    paper_order = ["NORMAL", "DRUSEN", "CNV", "DME"]
    idx = [OCT.classes.index(c) for c in paper_order]
    assert OCT.penalty()[np.ix_(idx, idx)].tolist() == [[0, 1, 1, 1], [1, 0, 1, 1], [4, 2, 0, 1], [4, 2, 1, 0]]


def test_weighted_error_hand_computed():
    confusion = np.array([[90, 5, 3, 2],     # true CNV: 5 x 1 + 3 x 2 + 2 x 4 = 19
                          [4, 80, 6, 10],    # true DME: 4 x 1 + 6 x 2 + 10 x 4 = 56
                          [1, 2, 85, 12],    # true DRUSEN: 15 x 1
                          [0, 1, 9, 90]])    # true NORMAL: 10 x 1
    assert weighted_error(confusion, OCT.penalty()) == pytest.approx(100 / 400)
    # With the 0/1 matrix the weighted error is the plain error rate.
    assert weighted_error(confusion, 1 - np.eye(4)) == pytest.approx(1 - np.trace(confusion) / 400)


def test_weighted_error_bad_input():
    with pytest.raises(InputError):
        weighted_error(np.ones((3, 3)), OCT.penalty())
    with pytest.raises(InputError):
        weighted_error(np.ones((4, 4)), -OCT.penalty())
    assert np.isnan(weighted_error(np.zeros((4, 4)), OCT.penalty()))


def test_penalty_minimising_call_hand_computed():
    # P(CNV, DME, DRUSEN, NORMAL) = (0.3, 0, 0.2, 0.5): argmax says NORMAL, but calling NORMAL risks
    # 0.3 x 4 + 0.2 x 1 = 1.4 while calling CNV risks 0.2 + 0.5 = 0.7 (DME 1.0, DRUSEN 1.1).
    probs = np.array([[0.3, 0.0, 0.2, 0.5]])
    assert expected_penalty(probs, OCT.penalty())[0] == pytest.approx([0.7, 1.0, 1.1, 1.4])
    assert decide(probs, "argmax")[0] == OCT.class_index("NORMAL")
    assert decide(probs, "min_penalty", OCT.penalty())[0] == OCT.class_index("CNV")


def test_zero_one_matrix_makes_bayes_equal_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=500)
    assert (decide(probs, "min_penalty", 1 - np.eye(4)) == decide(probs, "argmax")).all()


def test_bayes_rule_lowers_weighted_error_when_probabilities_are_calibrated():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.7), size=20000)
    truth = (probs.cumsum(axis=1) > rng.random((20000, 1))).argmax(axis=1)  # truth drawn from the probabilities
    comparison = compare_decision_rules(truth, probs, OCT.penalty())
    assert comparison.min_penalty_weighted_error < comparison.argmax_weighted_error
    assert comparison.improvement > 0 and comparison.changed_calls > 0
    assert (comparison.argmax_confusion == decision_confusion(truth, probs, "argmax")).all()


def test_decide_needs_a_matrix_and_a_known_rule():
    with pytest.raises(InputError):
        decide(np.ones((2, 4)) / 4, "min_penalty")
    with pytest.raises(InputError):
        decide(np.ones((2, 4)) / 4, "maximum")


def test_load_penalty_matrix_formats(tmp_path):
    want = OCT.penalty()
    (tmp_path / "rows.json").write_text(json.dumps(want.tolist()))
    assert (load_penalty_matrix(tmp_path / "rows.json", OCT.classes) == want).all()
    paper = {"classes": ["NORMAL", "DRUSEN", "CNV", "DME"],
             "matrix": [[0, 1, 1, 1], [1, 0, 1, 1], [4, 2, 0, 1], [4, 2, 1, 0]]}
    (tmp_path / "paper.json").write_text(json.dumps(paper))
    assert (load_penalty_matrix(tmp_path / "paper.json", OCT.classes) == want).all()
    nested = {t: {p: float(want[i, j]) for j, p in enumerate(OCT.classes)} for i, t in enumerate(OCT.classes)}
    (tmp_path / "nested.json").write_text(json.dumps(nested))
    assert (load_penalty_matrix(tmp_path / "nested.json", OCT.classes) == want).all()
    (tmp_path / "paper.csv").write_text("true,NORMAL,DRUSEN,CNV,DME\nNORMAL,0,1,1,1\nDRUSEN,1,0,1,1\n"
                                        "CNV,4,2,0,1\nDME,4,2,1,0\n")
    assert (load_penalty_matrix(tmp_path / "paper.csv", OCT.classes) == want).all()
    (tmp_path / "plain.csv").write_text("\n".join(",".join(str(x) for x in row) for row in want))
    assert (load_penalty_matrix(tmp_path / "plain.csv", OCT.classes) == want).all()


@pytest.mark.parametrize("name, text", [("small.json", "[[0, 1], [1, 0]]"), ("neg.json", "[[0,-1,1,1],[1,0,1,1],"
                                        "[1,1,0,1],[1,1,1,0]]"), ("bad.json", "{not json"),
                                        ("other.csv", "t,A,B\nA,0,1\nB,1,0\n"), ("text.csv", "a,b\nc,d\n")])
def test_load_penalty_matrix_rejects_bad_files(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as err:
        load_penalty_matrix(tmp_path / name, OCT.classes)
    assert name in str(err.value)


def test_load_penalty_matrix_missing_file(tmp_path):
    with pytest.raises(InputError):
        load_penalty_matrix(tmp_path / "absent.json", OCT.classes)


# -- the Penalty value: checked once when made, immutable, passed on as it is ---------------------------------
def test_penalty_value_is_checked_immutable_and_hashable():
    from core.metrics.penalties import Penalty

    penalty = Penalty.of([[0, 1], [4, 0]], ["NORMAL", "CNV"], "paper", "file")
    assert penalty.rows == ((0.0, 1.0), (4.0, 0.0)) and penalty.classes == ("NORMAL", "CNV")
    assert penalty.describe() == "paper (read from a file)"
    assert hash(penalty) == hash(Penalty.of(np.array([[0, 1], [4, 0]]), ("NORMAL", "CNV"), "paper", "file"))
    with pytest.raises(ValueError):
        penalty.matrix[0, 1] = 9  # read-only
    with pytest.raises(AttributeError):
        penalty.rows = ((0, 0), (0, 0))
    # metric functions take it as it is (np.asarray gives the matrix)
    assert weighted_error([[3, 1], [1, 5]], penalty) == pytest.approx((1 + 4) / 10)


@pytest.mark.parametrize("matrix, message", [
    ([[0, 0], [0, 0]], "'mine' is all zeros"),
    ([[1, 0], [0, 1]], "'mine' .*off the diagonal"),
    ([[0, 1]], "'mine': must be square"),
    ([[0, 1, 1], [1, 0, 1], [1, 1, 0]], "'mine': must be 2x2 for 2 classes"),
    ([[0, -1], [1, 0]], "'mine': entries must be finite and non-negative"),
    ([[0, float("nan")], [1, 0]], "'mine': entries must be finite"),
    ("abc", "'mine': must be a square table of numbers"),
])
def test_penalty_value_names_what_is_wrong(matrix, message):
    from core.metrics.penalties import Penalty

    with pytest.raises(InputError, match=message):
        Penalty.of(matrix, ["A", "B"], "mine")


def test_penalty_value_refuses_an_unknown_source():
    from core.metrics.penalties import Penalty

    with pytest.raises(InputError, match="source must be one of"):
        Penalty.of([[0, 1], [1, 0]], ["A", "B"], "mine", "guessed")


def test_a_penalty_for_other_classes_is_refused_where_it_is_used():
    from core.metrics.penalties import Penalty
    from core.report.active_penalty import resolve_penalty

    task = get_task("oct-kermany")
    other = Penalty.of([[0, 1], [1, 0]], ["A", "B"], "two classes")
    with pytest.raises(InputError, match="two classes.*is for classes \\['A', 'B'\\], not \\['CNV'"):
        resolve_penalty(None, task, other)
    with pytest.raises(InputError, match="needs 4x4"):
        weighted_error(np.ones((4, 4)), other)


def test_one_report_build_resolves_and_checks_the_penalty_once(seeded_workspace, monkeypatch):
    """build_report resolves the matrix once and hands the Penalty down: one resolve_penalty call and one check of
    the matrix, however many sections price errors with it."""
    import core.report
    import core.report.active_penalty as active
    import core.report.build as build
    from core.metrics import penalties
    from core.store import Workspace

    calls = {"resolve": 0, "checks": 0}
    resolve = active.resolve_penalty

    def counted_resolve(*args, **kwargs):
        calls["resolve"] += 1
        return resolve(*args, **kwargs)

    for module in (active, build, core.report):
        monkeypatch.setattr(module, "resolve_penalty", counted_resolve)
    check = penalties.Penalty.__post_init__

    def counted_check(self):
        calls["checks"] += 1
        check(self)

    monkeypatch.setattr(penalties.Penalty, "__post_init__", counted_check)
    ids = seeded_workspace
    report = build.build_report(Workspace.open(ids["root"]), ids["run_id"], ids["test_set_id"], bootstrap=0,
                                include_readers=False)
    assert calls == {"resolve": 1, "checks": 1}
    assert report["penalty"]["name"] == "task default" and len(report["penalty"]["matrix"]) == 4
