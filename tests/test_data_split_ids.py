"""An image's id does not depend on how its folder was pointed at: `root` split test and `root/test` agree."""

from __future__ import annotations

from core.data.loading import load_dataset
from tests._data_files import image_folder


def test_split_ids_are_relative_to_the_split_folder(tmp_path):
    root = image_folder(tmp_path / "oct", {"NORMAL": 2, "CNV": 2}, split="train")
    image_folder(root, {"NORMAL": 1, "CNV": 1}, split="test")
    via_split = load_dataset(root).split_named("test")
    via_folder = load_dataset(root / "test")
    assert sorted(via_split.table["image_id"]) == sorted(via_folder.table["image_id"]) == \
        ["CNV/CNV-0-1.png", "NORMAL/NORMAL-0-1.png"]
    assert via_split.fingerprint == via_folder.fingerprint
    # The whole dataset keeps the split in its ids (train/ and test/ may hold the same file name).
    assert "test/CNV/CNV-0-1.png" in set(load_dataset(root).table["image_id"])
    # A record written before (predictions, readings naming "test/CNV/...") still finds its image.
    old = via_split.row_of("test/CNV/CNV-0-1.png")
    assert old is not None and via_split.table["image_id"].iat[old] == "CNV/CNV-0-1.png"
    assert via_split.subset([0, 1]).row_of("test/NORMAL/NORMAL-0-1.png") is not None
    assert via_folder.row_of("test/CNV/CNV-0-1.png") is None  # only a split keeps that alias
