"""DICOM uploads (issue 21): refused with the file and the problem named, nothing stored; or added whole, with no
identifying name or id anywhere in the workspace."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.data.ingest import ingest_upload, load_registered
from core.errors import InputError
from tests.hostile.corpus import cases


@pytest.mark.parametrize("case", cases("dicom-refuse"), ids=str)
def test_refused_naming_the_file_and_nothing_is_stored(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    with pytest.raises(InputError) as err:
        ingest_upload(workspace, zip_path.name, zip_path.read_bytes())
    assert re.search(case.expect, str(err.value)), str(err.value)
    assert workspace.list_datasets() == [] and not any(workspace.uploads_dir.iterdir())


@pytest.mark.parametrize("case", cases("dicom-accept"), ids=str)
def test_added_whole_and_decoded_with_nothing_identifying_kept(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    added = ingest_upload(workspace, zip_path.name, zip_path.read_bytes())
    ds = load_registered(workspace, added.dataset_id)
    assert len(ds) == 2 and added.record["meta"]["problems"] == []
    assert sorted(int(np.asarray(ds.load_image(i)).max()) for i in range(2)) == [0, 255]
    for path in workspace.root.rglob("*"):
        assert "DOE" not in path.name and (not path.is_file() or b"MRN-" not in path.read_bytes()), path
    assert not any("DOE" in i for i in ds.table["image_id"])
