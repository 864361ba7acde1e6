"""Inputs that used to give weak messages or tracebacks now name the file and the problem (issue 14, item 9)."""

from __future__ import annotations

import re
import shutil

import pytest

from core.data import get_task, load_dataset
from core.errors import InputError
from core.infer import predict
from core.metrics import load_penalty_matrix
from tests.hostile.corpus import cases


def _refused(call, expect: str) -> None:
    with pytest.raises(InputError) as err:
        call()
    assert re.search(expect, str(err.value)), str(err.value)


@pytest.mark.parametrize("case", cases("message-dataset"), ids=str)
def test_dataset_with_an_incomplete_manifest(case, tmp_path):
    path = case.build(tmp_path)
    _refused(lambda: load_dataset(path, extract_to=tmp_path / "x"), case.expect)


@pytest.mark.parametrize("case", cases("message-task"), ids=str)
def test_bad_task_file(case, tmp_path):
    path = case.build(tmp_path)
    _refused(lambda: get_task(str(path)), case.expect)


@pytest.mark.parametrize("case", cases("message-penalty"), ids=str)
def test_bad_penalty_file(case, tmp_path):
    path = case.build(tmp_path)
    _refused(lambda: load_penalty_matrix(path, get_task("oct-kermany").classes), case.expect)


@pytest.mark.parametrize("case", cases("message-card"), ids=str)
def test_malformed_model_card_at_predict(case, tmp_path, seeded_workspace, oct_folder):
    from core.models import find_checkpoint
    from core.store import Workspace

    ws = Workspace.open(seeded_workspace["root"])
    weights = find_checkpoint(ws.get_run(seeded_workspace["run_id"])["run_dir"])
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    shutil.copyfile(weights, checkpoint / weights.name)
    (checkpoint / "model_card.json").write_text(case.build(tmp_path))
    _refused(lambda: predict(checkpoint, oct_folder, Workspace.open(tmp_path / "ws")), case.expect)


@pytest.mark.parametrize("case", cases("message-penalty-use"), ids=str)
def test_penalty_matrix_put_into_use(case, tmp_path):
    """The editor, the workspace setting and the report each refuse a matrix under which no mistake costs anything."""
    from core.metrics.penalty_effect import check_penalty_entries
    from core.report.active_penalty import resolve_penalty, save_active_penalty
    from core.store import Workspace

    task = get_task("oct-kermany")
    matrix = case.build(tmp_path)
    ws = Workspace.open(tmp_path / "ws")
    _refused(lambda: check_penalty_entries(matrix, task.classes), case.expect)
    _refused(lambda: save_active_penalty(ws, task, "mine", matrix), case.expect)
    _refused(lambda: resolve_penalty(ws, task, penalty=matrix), case.expect)
    assert ws.get_setting("active_penalty") is None  # nothing was put into use


@pytest.mark.parametrize("case", cases("message-card"), ids=str)
def test_malformed_model_card_of_a_run(case, tmp_path):
    """The evaluation pages read a run's card through run_model_card: a damaged card is named, not taken as none."""
    from core.train.run_folder import run_model_card

    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint" / "model_card.json").write_text(case.build(tmp_path))
    _refused(lambda: run_model_card({"run_dir": str(tmp_path / "run")}), case.expect)


@pytest.mark.parametrize("case", cases("message-image"), ids=str)
def test_image_over_the_pixel_limit(case, tmp_path):
    from core.data.images import check_image, image_size, open_image

    path = case.build(tmp_path)
    _refused(lambda: check_image(path), case.expect)
    _refused(lambda: open_image(path), case.expect)
    assert "4,611,686" not in _message(lambda: image_size(path))  # no limit was given: PIL's is the one named


def _message(call) -> str:
    with pytest.raises(InputError) as err:
        call()
    return str(err.value)
