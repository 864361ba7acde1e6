"""Counts and labels read from a file are checked before anything is allocated from them (issue 14, item 1)."""

from __future__ import annotations

import re

import pytest

from tests.hostile.corpus import cases, load_in_bounded_process


@pytest.mark.parametrize("case", cases("bounded"), ids=str)
def test_hostile_dataset_file_is_refused_with_a_message_in_bounded_memory(case, tmp_path):
    code, stderr = load_in_bounded_process(case.build(tmp_path))
    assert code == 2, f"expected a clean InputError, got exit {code}:\n{stderr[-2000:]}"
    assert re.search(case.expect, stderr), stderr
