"""Synthetic OCT demo generator: determinism, Kermany naming, patient-level splits, lesion boxes, atomic writes."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.synthetic import CLASSES, generate_demo_dataset, render_bscan
from core.errors import InputError

NAME = re.compile(r"^(CNV|DME|DRUSEN|NORMAL)-(\d+)-(\d+)\.jpeg$")
SMALL = dict(per_class=3, test_per_class=2, size=64)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _boxes(root: Path) -> list[dict]:
    with open(root / "lesions.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "demo"
    generate_demo_dataset(root, seed=7, **SMALL)
    return root


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, demo):
    generate_demo_dataset(tmp_path / "again", seed=7, **SMALL)
    generate_demo_dataset(tmp_path / "other", seed=8, **SMALL)
    first, again, other = _files(demo), _files(tmp_path / "again"), _files(tmp_path / "other")
    assert first == again
    images = [k for k in first if k.endswith(".jpeg")]
    other_images = [k for k in other if k.endswith(".jpeg")]
    assert len(images) == len(other_images) == 4 * (3 + 2)
    # Different patients (names) and different pixels.
    assert set(images) != set(other_images)
    assert sorted(first[k] for k in images) != sorted(other[k] for k in other_images)


def test_balanced_classes_in_kermany_naming_and_summary(tmp_path):
    summary = generate_demo_dataset(tmp_path / "d", seed=1, **SMALL)
    assert summary["counts"] == {"train": {c: 3 for c in CLASSES}, "test": {c: 2 for c in CLASSES}}
    assert summary["n_images"] == 20 and summary["seconds"] >= 0
    for split, per_class in (("train", 3), ("test", 2)):
        for label in CLASSES:
            files = sorted((tmp_path / "d" / split / label).iterdir())
            assert len(files) == per_class
            for f in files:
                match = NAME.match(f.name)
                assert match and match.group(1) == label, f.name
                with Image.open(f) as im:
                    assert (im.format, im.mode, im.size) == ("JPEG", "L", (64, 64))
    patients = {NAME.match(p.name).group(2) for p in (tmp_path / "d").rglob("*.jpeg")}
    assert summary["n_patients"] == len(patients)


def test_patient_ids_never_span_classes_or_splits(tmp_path):
    root = tmp_path / "d"
    generate_demo_dataset(root, per_class=30, test_per_class=10, size=32, seed=3)
    where = defaultdict(set)
    per_patient = defaultdict(list)
    for p in root.rglob("*.jpeg"):
        label, patient, n = NAME.match(p.name).groups()
        where[patient].add((p.parent.parent.name, label))
        per_patient[patient].append(int(n))
    assert all(len(places) == 1 for places in where.values())
    # Several images per patient, numbered 1..n.
    assert any(len(ns) > 1 for ns in per_patient.values())
    assert all(sorted(ns) == list(range(1, len(ns) + 1)) for ns in per_patient.values())


def test_lesion_boxes_inside_image_for_every_lesion_image_and_none_for_normal(demo):
    rows = _boxes(demo)
    assert rows and set(rows[0]) == {"path", "label", "x0", "y0", "x1", "y1"}
    boxed = set()
    for row in rows:
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63, row
        assert row["label"] != "NORMAL" and row["path"].split("/")[1] == row["label"]
        assert (demo / row["path"]).is_file()
        boxed.add(row["path"])
    lesion_images = {p.relative_to(demo).as_posix() for p in demo.rglob("*.jpeg") if p.parent.name != "NORMAL"}
    assert boxed == lesion_images


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize("size", [48, 256])
def test_render_bscan_shape_and_boxes(label, size):
    img, boxes = render_bscan(label, np.random.default_rng(11), size)
    assert img.dtype == np.uint8 and img.shape == (size, size)
    assert 5 < img.mean() < 200 and img.std() > 10  # a picture, not a blank
    assert (len(boxes) == 0) == (label == "NORMAL")
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 <= x1 < size and 0 <= y0 <= y1 < size
    again, again_boxes = render_bscan(label, np.random.default_rng(11), size)
    assert np.array_equal(img, again) and boxes == again_boxes


def test_lesions_are_where_the_boxes_say():
    """A cyst is fluid: DME boxes are darker than the retina around them; drusen lift the bright RPE into theirs."""
    rng = np.random.default_rng(5)
    patient = {"label": "DME", "thickness": 1.0, "rnfl": 1.0, "nasal_side": 1.0, "pit_depth": 0.9,
               "pit_width": 0.08, "choroid": 0.08, "severity": 1.0, "lesion_size": 1.2, "speckle": 6.0,
               "gain": 1.1}
    img, boxes = render_bscan("DME", rng, 256, patient)
    big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    x0, y0, x1, y1 = big
    inside = img[y0 + 1:y1, x0 + 1:x1].mean()
    ring = img[max(y0 - 4, 0):y1 + 5, max(x0 - 6, 0):x1 + 7].astype(float)
    assert inside < ring.mean()


def test_readme_and_demo_json_say_synthetic(demo):
    assert "SYNTHETIC" in (demo / "README.txt").read_text(encoding="utf-8")
    params = json.loads((demo / "demo.json").read_text(encoding="utf-8"))
    assert params["synthetic"] is True
    assert (params["per_class"], params["test_per_class"], params["size"], params["seed"]) == (3, 2, 64, 7)
    assert params["classes"] == list(CLASSES)


def test_progress_is_reported_up_to_the_total(tmp_path):
    calls = []
    generate_demo_dataset(tmp_path / "d", progress=lambda done, total: calls.append((done, total)), **SMALL)
    assert calls[0] == (0, 20) and calls[-1] == (20, 20)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def _fail_at(n):
    def progress(done, total):
        if done == n:
            raise RuntimeError("interrupted")
    return progress


def test_interrupted_run_leaves_no_dataset_and_no_temporary_folder(tmp_path):
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_demo_dataset(tmp_path / "d", progress=_fail_at(7), **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_keeps_the_earlier_dataset_intact(tmp_path, demo):
    root = tmp_path / "d"
    generate_demo_dataset(root, seed=7, **SMALL)
    before = _files(root)
    with pytest.raises(RuntimeError):
        generate_demo_dataset(root, seed=9, progress=_fail_at(7), **SMALL)
    assert _files(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    # A run that finishes replaces the old demo.
    generate_demo_dataset(root, seed=9, **SMALL)
    assert json.loads((root / "demo.json").read_text())["seed"] == 9
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_never_overwrites_a_folder_that_is_not_a_demo(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "scan.jpeg").write_bytes(b"precious")
    with pytest.raises(InputError, match="not an earlier synthetic demo"):
        generate_demo_dataset(root, **SMALL)
    assert (root / "scan.jpeg").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_demo_dataset(empty, **SMALL)
    assert (empty / "demo.json").is_file()


@pytest.mark.parametrize("bad", [dict(per_class=0), dict(size=8), dict(seed=-1), dict(test_per_class=1.5),
                                 dict(per_class=True)])
def test_bad_parameters_are_input_errors(tmp_path, bad):
    with pytest.raises(InputError):
        generate_demo_dataset(tmp_path / "d", **{**SMALL, **bad})
    assert not (tmp_path / "d").exists()


def test_unknown_label_is_an_input_error():
    with pytest.raises(InputError, match="unknown OCT class"):
        render_bscan("GLAUCOMA", np.random.default_rng(0), 64)
