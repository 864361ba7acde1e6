"""Images corrupt behind a valid header are caught at ingestion (decoded in full once); at inference such an
image is reported and skipped, never failing the whole set, unless the user asks for strictness (item 7)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from core.data import load_dataset
from core.errors import InputError
from core.infer import predict
from tests.hostile.corpus import cases
from tests.train_fixtures import make_kermany_folder


@pytest.fixture
def folder(tmp_path):
    return make_kermany_folder(tmp_path / "oct", per_class=1, test_per_class=1)


def _plant(case, folder, tmp_path):
    bad = case.build(tmp_path)
    return shutil.copyfile(bad, folder / "test" / "CNV" / bad.name)


@pytest.mark.parametrize("case", cases("image"), ids=str)
def test_corrupt_image_is_refused_at_ingestion_naming_file_and_problem(case, folder, tmp_path):
    _plant(case, folder, tmp_path)
    with pytest.raises(InputError) as err:
        load_dataset(folder, "oct-kermany")
    assert re.search(case.expect, str(err.value)), str(err.value)
    skipped = load_dataset(folder, "oct-kermany", skip_bad=True)  # by choice: the rest is kept
    assert len(skipped) == 8 and len(skipped.problems) == 1


@pytest.mark.parametrize("case", cases("image"), ids=str)
def test_image_damaged_after_ingestion_is_skipped_and_reported_at_inference(case, folder, tmp_path,
                                                                            seeded_workspace):
    from core.models import find_checkpoint
    from core.store import Workspace

    # The seeded model, run into a workspace of this test's own (the shared one keeps its predictions list).
    seeded = Workspace.open(seeded_workspace["root"])
    weights = find_checkpoint(seeded.get_run(seeded_workspace["run_id"])["run_dir"])
    ws = Workspace.open(tmp_path / "ws")
    ds = load_dataset(folder, "oct-kermany").split_named("test")
    victim = ds.table["path"].iat[0]
    shutil.copyfile(case.build(tmp_path), victim)  # same name: the file is damaged after it was checked
    frame = predict(weights, ds, ws, num_workers=0, use_cache=False)
    assert len(frame) == len(ds) - 1 and ds.table["image_id"].iat[0] not in set(frame["image_id"])
    (skipped,) = frame.attrs["meta"]["skipped_images"]
    assert skipped["image_id"] == ds.table["image_id"].iat[0]
    # Named from the dataset's own folder ("src/test/CNV/x.png"), never by the server path (issue 22).
    shown = f"{Path(ds.root).name}/{Path(victim).relative_to(ds.root).as_posix()}"
    with pytest.raises(InputError, match=r"1 image\(s\) could not be decoded: .*" + re.escape(shown)) as info:
        predict(weights, ds, ws, num_workers=0, use_cache=False, skip_bad=False)
    assert str(tmp_path) not in str(info.value)


def test_decompression_bomb_message_gives_the_size(tmp_path):
    from core.data.images import open_image
    from tests.test_data_images import _png_with_claimed_size

    path = _png_with_claimed_size(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(InputError, match=r"bomb\.png: image is 30000x30000 = 900,000,000 pixels, above the limit of "
                                         r"[\d,]+ \(decompression-bomb guard\)"):
        open_image(path, max_pixels=10**12)
