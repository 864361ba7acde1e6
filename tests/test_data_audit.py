"""The dataset audit on small data built here: re-saved duplicates, a patient in two splits, a test set resized to
squares, a flipped label; the CLI's JSON keys; the cache; and the real CXR sample against a squashed copy."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from core.__main__ import main
from core.data import load_dataset
from core.audit import AUDIT_KEYS, AuditOptions, cached_audit, run_audit
from core.audit.report import audit_key, audit_path
from core.audit.scan import jpeg_quality

PIXELS_ONLY = AuditOptions(features=False)


def _film(seed: int, size=(96, 72), bright: bool = True) -> Image.Image:
    """A smooth random 'film': low-frequency blobs (distinct pHashes) plus a class-typical brightness."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 8))
    im = Image.fromarray(np.uint8(coarse * 180 + (60 if bright else 0))).resize(size, Image.BICUBIC)
    return im


def _write(im: Image.Image, path, **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **save)


def test_jpeg_quality_estimate_matches_the_quality_written():
    for quality in (30, 50, 75, 90, 95):
        buffer = io.BytesIO()
        _film(0).save(buffer, format="JPEG", quality=quality)
        assert jpeg_quality(Image.open(buffer)) == quality


def test_duplicates_patients_and_properties(tmp_path, workspace):
    root = tmp_path / "data"
    films = {}
    for i in range(6):
        cls = "CNV" if i % 2 else "NORMAL"
        split = "test" if i >= 4 else "train"
        films[i] = _film(i)
        _write(films[i], root / split / cls / f"{cls}-P{i}-1.png")
    # an exact copy: film 0 decoded and written again as PNG under another name (other bytes, same pixels)
    _write(films[0], root / "train" / "NORMAL" / "NORMAL-P10-1.png", compress_level=1)
    # a near copy: film 2 re-saved as a JPEG
    _write(films[2], root / "train" / "NORMAL" / "NORMAL-P11-1.jpeg", quality=85)
    # patient P1 also in the test split
    _write(_film(21), root / "test" / "CNV" / "CNV-P1-2.png")
    ds = load_dataset(root)
    report = run_audit(ds, workspace=workspace, options=PIXELS_ONLY)
    assert report["exact_duplicates"]["groups"] == [["train/NORMAL/NORMAL-P0-1.png", "train/NORMAL/NORMAL-P10-1.png"]]
    assert report["exact_duplicates"]["n_extra_copies"] == 1
    near = report["near_duplicates"]
    assert near["threshold"] == 2 and "Hamming distance <= 2" in near["threshold_text"]
    assert near["groups"] == [["train/NORMAL/NORMAL-P11-1.jpeg", "train/NORMAL/NORMAL-P2-1.png"]]
    assert report["patient_leakage"]["within"] == [
        {"patient_id": "P1", "splits": {"test": ["test/CNV/CNV-P1-2.png"], "train": ["train/CNV/CNV-P1-1.png"]}}]
    groups = {(g["split"], g["class"]): g for g in report["properties"]["data"]["by_split_class"]}
    assert groups[("train", "NORMAL")]["n"] == 4
    assert groups[("train", "NORMAL")]["file_format"] == {"JPEG": 1, "PNG": 3}
    assert groups[("train", "NORMAL")]["jpeg_quality"]["median"] == 85
    assert groups[("test", "CNV")]["width"]["median"] == 96 and groups[("test", "CNV")]["aspect"]["median"] == 96 / 72
    assert report["shift"] is None and report["label_issues"] is None
    ids = set(ds.table["image_id"])
    assert set(sum(report["exact_duplicates"]["groups"] + near["groups"], [])) <= ids


def _squares_pair(tmp_path, n=20):
    train, test = tmp_path / "train_data", tmp_path / "test_data"
    for i in range(n):
        cls = "A" if i % 2 else "B"
        film = _film(100 + i, size=(64, 40))
        _write(film, train / cls / f"{cls}-T{i}-1.png")
        _write(_film(200 + i, size=(64, 40)).resize((32, 32)), test / cls / f"{cls}-S{i}-1.png")
    return load_dataset(train), load_dataset(test)


def test_shift_flags_a_test_set_of_squares_with_plain_reasons(tmp_path, workspace):
    train, test = _squares_pair(tmp_path)
    report = run_audit(test, train, workspace=workspace, options=AuditOptions(image_size=64))
    shift = report["shift"]
    assert shift["flagged"] is True
    assert "test images are all 32 x 32 squares; training images are all 64 x 40 landscape" in shift["reasons"]
    by_name = {t["property"]: t for t in shift["tests"]}
    assert by_name["width"]["statistic"] == 1.0 and by_name["width"]["p_value"] < 1e-6 and by_name["width"]["flagged"]
    assert by_name["file_format"]["flagged"] is False  # PNG on both sides
    domain = shift["domain_classifier"]
    assert domain["n_data"] == 20 and domain["n_against"] == 20 and domain["folds"] == 5
    assert 0.0 <= domain["auc"] <= 1.0 and domain["flagged"] == (domain["auc"] >= 0.75)
    # the same data against itself is not flagged by any property
    same = run_audit(train, train, workspace=workspace, options=PIXELS_ONLY)["shift"]
    assert same["flagged"] is False and same["reasons"] == []
    assert report["exact_duplicates"]["across"] == [] and same["tests"][0]["statistic"] == 0.0


def test_label_issues_find_a_flipped_label(tmp_path, workspace):
    root = tmp_path / "labelled"
    for i in range(24):
        cls = "BRIGHT" if i % 2 else "DARK"
        label = cls if i != 5 else "DARK"  # image 5 is bright but filed as DARK
        pattern = np.full((48, 48), 230 if cls == "BRIGHT" else 25, np.uint8)
        pattern[::6] = 128 if cls == "BRIGHT" else 90  # stripes so the backbone sees texture, not a flat field
        noise = np.random.default_rng(i).integers(-12, 12, pattern.shape)
        _write(Image.fromarray(np.uint8(np.clip(pattern + noise, 0, 255))), root / label / f"{label}-P{i}-1.png")
    ds = load_dataset(root)
    run_id = workspace.create_run(config={"backbone": "tf_efficientnet_lite0", "mode": "features", "image_size": 64})
    report = run_audit(ds, workspace=workspace, run=workspace.get_run(run_id))
    issues = report["label_issues"]
    assert issues["run"] == run_id and "no label is changed" in issues["note"]
    assert issues["cases"][0]["image_id"] == "DARK/DARK-P5-1.png"
    assert issues["cases"][0]["given_label"] == "DARK" and issues["cases"][0]["suggested_label"] == "BRIGHT"
    assert issues["n_flagged"] <= 3
    assert list(ds.table["label"]).count("DARK") == 13  # never relabelled


def test_cli_writes_every_key_and_caches_by_fingerprint(tmp_path, workspace):
    train, test = _squares_pair(tmp_path, n=10)
    out = tmp_path / "audit.json"
    assert main(["audit", str(tmp_path / "test_data"), "--against", str(tmp_path / "train_data"), "--no-features",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(AUDIT_KEYS) <= set(report)
    assert AUDIT_KEYS == ("exact_duplicates", "near_duplicates", "patient_leakage", "properties", "shift",
                          "label_issues")
    assert report["shift"]["flagged"] is True and report["label_issues"] is None
    key = audit_key(test.fingerprint, test.task.name, train.fingerprint, None, PIXELS_ONLY)
    cached = audit_path(workspace, key)
    assert json.loads(cached.read_text())["shift"] == report["shift"]
    cached.write_text(json.dumps({**report, "marker": "from the cache"}))
    assert cached_audit(workspace, test, train, options=PIXELS_ONLY)["marker"] == "from the cache"


def test_chest_xray_sample_against_a_squashed_copy(shared_data, tmp_path, workspace):
    source = shared_data / "chest_xray_sample"
    files = sorted(source.rglob("*.jpeg"))[::10]
    for path in files:
        out = tmp_path / "squashed" / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).resize((224, 224)).save(out, quality=90)
    report = run_audit(load_dataset(tmp_path / "squashed"), load_dataset(source), workspace=workspace,
                       options=PIXELS_ONLY)
    shift = report["shift"]
    assert shift["flagged"] is True
    assert shift["reasons"][0] == "test images are all 224 x 224 squares; training images are landscape, median 512 x 367"
    # each squashed film is still recognised as a copy of its original
    across = {a["data"][0]: a["against"] for a in report["near_duplicates"]["across"]}
    assert len(across) >= 0.9 * len(files)
    assert all(image_id in across[image_id] for image_id in list(across)[:20])
