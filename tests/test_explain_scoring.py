"""Scoring maps against lesion boxes (hand-computed cases) and reading/matching a boxes CSV."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.explain import (
    box_mask,
    match_boxes,
    pointing_game,
    positive_share_in_boxes,
    read_boxes,
    score_against_boxes,
    score_maps,
    summarise_scores,
)


def test_box_mask_uses_inclusive_pixel_coordinates_and_clips():
    mask = box_mask((10, 10), [(2, 3, 5, 4)])
    assert mask.sum() == 4 * 2 and mask[3:5, 2:6].all()
    assert box_mask((10, 10), [(4, 4, 4, 4)]).sum() == 1  # a one-pixel lesion
    assert box_mask((10, 10), [(8, 8, 20, 20)]).sum() == 4
    assert box_mask((10, 10), [(2, 3, 5, 4)], tolerance=1).sum() == 6 * 4


def test_pointing_game_and_positive_share_by_hand():
    values = np.zeros((10, 10))
    values[3, 3] = 4.0  # the peak, inside the box
    values[8, 8] = 1.0  # positive outside
    values[0, 0] = -5.0  # negative values do not count
    box = [(2, 2, 4, 4)]
    assert pointing_game(values, box)
    assert positive_share_in_boxes(values, box) == pytest.approx(4.0 / 5.0)
    score = score_against_boxes(values, box)
    assert (score.peak_x, score.peak_y, score.n_boxes) == (3, 3, 1)
    assert not pointing_game(values, [(4, 4, 6, 6)])
    assert not pointing_game(values, [(5, 5, 6, 6)])
    assert pointing_game(values, [(5, 5, 6, 6)], tolerance=2)  # peak 2 px away: a hit with tolerance


def test_degenerate_maps_point_nowhere():
    flat = np.zeros((8, 8))
    assert not pointing_game(flat, [(0, 0, 7, 7)])
    assert math.isnan(positive_share_in_boxes(flat, [(0, 0, 7, 7)]))
    with_nan = np.full((8, 8), np.nan)
    with_nan[2, 2] = 1.0
    assert pointing_game(with_nan, [(2, 2, 2, 2)])
    assert positive_share_in_boxes(with_nan, [(2, 2, 2, 2)]) == 1.0
    assert score_against_boxes(flat, []).n_boxes == 0


def test_summary_per_class_split_by_correct_and_misclassified():
    hit = np.zeros((4, 4))
    hit[1, 1] = 1.0
    miss = np.zeros((4, 4))
    miss[3, 3] = 1.0
    box = [(0, 0, 1, 1)]
    records = [
        {"image_id": "a", "label": "CNV", "predicted": "CNV", "map": hit, "boxes": box},
        {"image_id": "b", "label": "CNV", "predicted": "CNV", "map": miss, "boxes": box},
        {"image_id": "c", "label": "CNV", "predicted": "DME", "map": hit, "boxes": box},
        {"image_id": "d", "label": "DME", "predicted": "DME", "map": hit, "boxes": box},
        {"image_id": "e", "label": "NORMAL", "predicted": "NORMAL", "map": hit, "boxes": []},  # no lesion
    ]
    scores = score_maps(records)
    assert scores["pointing_hit"].tolist() == [True, False, True, True, None]
    assert scores["correct"].tolist() == [True, True, False, True, True]
    summary = summarise_scores(scores, classes=["CNV", "DME", "NORMAL"]).set_index(["class", "outcome"])
    assert summary.loc[("CNV", "all"), "n_images"] == 3
    assert summary.loc[("CNV", "all"), "pointing_rate"] == pytest.approx(2 / 3)
    assert summary.loc[("CNV", "correct"), "pointing_rate"] == pytest.approx(1 / 2)
    assert summary.loc[("CNV", "misclassified"), "pointing_rate"] == 1.0
    assert summary.loc[("NORMAL", "all"), "n_images"] == 0
    assert math.isnan(summary.loc[("NORMAL", "all"), "pointing_rate"])
    assert summary.loc[("all classes", "all"), "n_images"] == 4
    assert summary.loc[("all classes", "all"), "pointing_hits"] == 3
    low, high = summary.loc[("all classes", "all"), ["pointing_low", "pointing_high"]]
    assert 0 < low < 0.75 < high <= 1  # Wilson interval around 3/4
    assert summary.loc[("CNV", "all"), "mean_positive_share"] == pytest.approx(2 / 3)


def test_read_boxes_validates_and_names_the_row():
    good = read_boxes(io.BytesIO(b"path,label,x0,y0,x1,y1\ntest/CNV/CNV-1-1.jpeg,CNV,1,2,30,40\n"))
    assert good.loc[0, "x1"] == 30.0
    with pytest.raises(InputError, match="missing column"):
        read_boxes(io.BytesIO(b"path,x0,y0,x1\nfile.png,1,2,3\n"))
    with pytest.raises(InputError, match="row 3 has a non-numeric y1"):
        read_boxes(io.BytesIO(b"image_id,x0,y0,x1,y1\na,1,2,3,4\nb,1,2,3,oops\n"))
    with pytest.raises(InputError, match="row 2 has x1 < x0"):
        read_boxes(io.BytesIO(b"image_id,x0,y0,x1,y1\na,5,2,3,4\n"))
    with pytest.raises(InputError, match="negative"):
        read_boxes(io.BytesIO(b"image_id,x0,y0,x1,y1\na,-1,2,3,4\n"))


def test_match_boxes_by_path_suffix_and_by_id(tmp_path):
    root = tmp_path / "demo"
    table = pd.DataFrame({
        "image_id": ["cnv1", "cnv2", "dme1"],
        "path": [str(root / "test/CNV/CNV-1-1.jpeg"), str(root / "test/CNV/CNV-2-1.jpeg"),
                 str(root / "train/DME/DME-3-1.jpeg")],
    })
    boxes = read_boxes(pd.DataFrame({
        "path": ["test/CNV/CNV-1-1.jpeg", "test/CNV/CNV-1-1.jpeg", "DME-3-1.jpeg", "test/CNV/missing.jpeg"],
        "x0": [1, 5, 0, 0], "y0": [1, 5, 0, 0], "x1": [4, 9, 2, 2], "y1": [4, 9, 2, 2]}))
    by_id, problems = match_boxes(boxes, table, base_dir=root)
    assert by_id == {"cnv1": [(1, 1, 4, 4), (5, 5, 9, 9)], "dme1": [(0, 0, 2, 2)]}
    assert problems == ["box for 'test/CNV/missing.jpeg': not in the dataset"]
    by_id, _ = match_boxes(boxes, table)  # no base folder: trailing path parts still match
    assert set(by_id) == {"cnv1", "dme1"}
    ids = read_boxes(pd.DataFrame({"image_id": ["cnv2", "zzz"], "x0": [0, 0], "y0": [0, 0], "x1": [1, 1],
                                   "y1": [1, 1]}))
    by_id, problems = match_boxes(ids, table)
    assert list(by_id) == ["cnv2"] and len(problems) == 1


def test_peak_of_a_flat_occlusion_block_is_its_centre():
    import numpy as np

    from core.explain.maps import peak_location

    values = np.zeros((60, 60))
    values[20:40, 10:30] = 1.0  # one 20 px window: the drop is flat over it
    row, col = peak_location(values)
    assert abs(row - 29.5) <= 0.5 and abs(col - 19.5) <= 0.5
    values[0, 0] = np.nan
    assert peak_location(values) == (row, col)
