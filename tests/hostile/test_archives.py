"""Zip uploads: only files a reader uses are extracted; honest-header bombs and full disks are refused
before anything is written (issue 14, item 4)."""

from __future__ import annotations

import re
import shutil
from collections import namedtuple

import pytest

from core.data.ingest import ingest_upload
from core.errors import InputError
from tests.hostile.corpus import cases


def _bytes_under(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", cases("zip-extract"), ids=str)
def test_only_dataset_files_are_extracted(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    result = ingest_upload(workspace, zip_path.name, zip_path.read_bytes())
    assert len(result.dataset) == 6
    assert _bytes_under(workspace.uploads_dir) < 100_000  # six 16x16 PNGs, not the 60 MB of other data
    assert sorted(p.suffix for p in workspace.uploads_dir.rglob("*") if p.is_file() and not p.name.startswith(".")) \
        == [".png"] * 6


@pytest.mark.parametrize("case", cases("zip-refuse"), ids=str)
def test_honest_header_bomb_is_refused_before_extracting(case, workspace, tmp_path):
    zip_path = case.build(tmp_path)
    with pytest.raises(InputError) as err:
        ingest_upload(workspace, zip_path.name, zip_path.read_bytes(), skip_bad=True)
    assert re.search(case.expect, str(err.value)), str(err.value)
    assert _bytes_under(workspace.uploads_dir) == 0 and workspace.list_datasets() == []


def test_extraction_that_would_fill_the_disk_is_refused(workspace, tmp_path, monkeypatch):
    """The disk is simulated nearly full (its real size cannot be changed in a test); the zip is real."""
    from tests.hostile.corpus import _zip_with_images

    zip_path = _zip_with_images(tmp_path / "up.zip", {})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100_000_000, 95_500_000, 4_500_000))
    with pytest.raises(InputError, match=r"up\.zip: extracting needs [\d,]+ bytes; .*uploads.* has 4,500,000 free "
                                         r"and 5,000,000 \(5% of the disk\) must stay free"):
        ingest_upload(workspace, zip_path.name, zip_path.read_bytes())
    assert workspace.list_datasets() == []
