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
