"""Task presets and user task files (core.data.tasks): class order, penalties, views, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data import Task, get_task, list_tasks
from core.data.tasks import BinaryView, load_task_file, task_from_dict
from core.errors import InputError


def test_presets_are_listed_and_valid():
    names = list_tasks()
    assert {"oct-kermany", "cxr-kermany", "dr-grading", "fundus-multilabel"} <= set(names)
    for name in names:
        task = get_task(name)
        k = len(task.classes)
        assert task.name == name and task.penalty().shape == (k, k)
        assert np.all(np.diag(task.penalty()) == 0)
        assert task_from_dict(task.to_dict()) == task  # round trip through a plain dict


def test_kermany_penalty_matrix_in_paper_order():
    task = get_task("oct-kermany")
    assert task.classes == ("CNV", "DME", "DRUSEN", "NORMAL")
    paper = ["NORMAL", "DRUSEN", "CNV", "DME"]
    idx = [task.class_index(c) for c in paper]
    in_paper_order = task.penalty()[np.ix_(idx, idx)]
    assert in_paper_order.tolist() == [[0, 1, 1, 1], [1, 0, 1, 1], [4, 2, 0, 1], [4, 2, 1, 0]]
    # Spot checks in class order (rows = true, columns = predicted).
    p = task.penalty()
    assert p[task.class_index("CNV"), task.class_index("NORMAL")] == 4
    assert p[task.class_index("DME"), task.class_index("DRUSEN")] == 2
    assert p[task.class_index("NORMAL"), task.class_index("CNV")] == 1


def test_oct_referral_and_views():
    task = get_task("oct-kermany")
    assert task.urgent_classes() == ("CNV", "DME")
    assert task.referral_levels["DRUSEN"] == "routine" and task.referral_levels["NORMAL"] == "observation"
    assert task.default_view() == BinaryView("urgent referral vs rest", ("CNV", "DME"), ("DRUSEN", "NORMAL"))
    assert task.view("CNV vs NORMAL").positive == ("CNV",)
    with pytest.raises(InputError, match="no binary view"):
        task.view("nonsense")


def test_cxr_labels_and_aliases():
    task = get_task("cxr-kermany")
    assert task.classes == ("NORMAL", "BACTERIAL", "VIRAL")
    assert task.canonical_label("bacteria") == "BACTERIAL" and task.canonical_label("Virus") == "VIRAL"
    assert task.canonical_label(" normal ") == "NORMAL"
    assert [v.name for v in task.binary_views] == ["pneumonia vs normal", "bacterial vs viral"]
    with pytest.raises(InputError, match="unknown label 'fungal'"):
        task.canonical_label("fungal")
    # Without a penalty matrix every error costs 1.
    assert task.penalty().tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_dr_grading_is_ordinal_with_distance_penalty():
    task = get_task("dr-grading")
    assert task.kind == "ordinal" and task.classes == ("0", "1", "2", "3", "4") and task.referable_from == 2
    assert task.penalty()[0, 4] == 4 and task.penalty()[3, 1] == 2
    assert task.default_view().positive == ("2", "3", "4")


def test_get_task_passthrough_and_unknown():
    task = get_task("dr-grading")
    assert get_task(task) is task
    with pytest.raises(InputError, match="unknown task 'nope'"):
        get_task("nope")


def test_task_files_json_and_toml(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({
        "name": "glaucoma", "classes": ["healthy", "glaucoma"], "kind": "binary",
        "referral_levels": {"glaucoma": "urgent", "healthy": "observation"},
        "penalty_matrix": [[0, 1], [5, 0]]}))
    task = get_task(str(tmp_path / "t.json"))
    assert task.name == "glaucoma" and task.penalty().tolist() == [[0, 1], [5, 0]]
    # An urgent class with no declared view gets the "urgent referral vs rest" view.
    assert task.default_view() == BinaryView("urgent referral vs rest", ("glaucoma",), ("healthy",))
    (tmp_path / "t.toml").write_text('name = "amd"\nclasses = ["dry", "wet", "none"]\n')
    assert load_task_file(tmp_path / "t.toml").classes == ("dry", "wet", "none")


@pytest.mark.parametrize("data,message", [
    ({"name": "x"}, "missing field 'classes'"),
    ({"classes": ["a"]}, "at least two classes"),
    ({"classes": ["a", "a"]}, "repeat"),
    ({"classes": ["a", "b"], "kind": "fuzzy"}, "kind must be one of"),
    ({"classes": ["a", "b"], "penalty_matrix": [[0, 1, 2]]}, "must be 2x2"),
    ({"classes": ["a", "b"], "penalty_matrix": [[0, -1], [1, 0]]}, "non-negative"),
    ({"classes": ["a", "b"], "referral_levels": {"c": "urgent"}}, "unknown class 'c'"),
    ({"classes": ["a", "b"], "referral_levels": {"a": "soon"}}, "must be one of"),
    ({"classes": ["a", "b"], "binary_views": [{"name": "v", "positive": ["z"], "negative": ["a"]}]},
     "unknown class 'z'"),
])
def test_bad_task_definitions(data, message):
    with pytest.raises(InputError, match=message):
        task_from_dict(data)


def test_bad_task_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: not a valid json"):
        load_task_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="top level"):
        load_task_file(tmp_path / "list.json")
    with pytest.raises(InputError, match="cannot read"):
        load_task_file(tmp_path / "missing.json")


def test_task_is_frozen():
    task = get_task("oct-kermany")
    with pytest.raises(AttributeError):
        task.name = "other"  # type: ignore[misc]
    assert isinstance(task, Task)
