"""benchmarks/bench_sites.py: the arm logic on features whose shift is known, the image shifts, the leakage filter
between the two sources, and one end-to-end run on tiny generated data with the tiny test backbone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sites", ROOT / "benchmarks" / "bench_sites.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sites"] = module
    spec.loader.exec_module(module)
    return module


bs = _bench()


def _binary_dataset(labels: np.ndarray) -> "bs.Dataset":
    """A site table (no pixels needed: the arm logic reads labels and patients only)."""
    names = np.where(labels, "PNEUMONIA", "NORMAL")
    table = pd.DataFrame({"image_id": [f"s{i}" for i in range(len(labels))],
                          "path": [f"/nowhere/s{i}.png" for i in range(len(labels))],
                          "label": names, "patient_id": [f"p{i}" for i in range(len(labels))], "split": "test"})
    return bs.Dataset(table, bs.PNEUMONIA_BINARY, "synthetic")


def _draw(rng, n: int, prevalence: float, offset: float = 0.0, d: int = 6):
    """Two Gaussian classes 1.6 apart on every axis (AUC ~0.99), plus a covariate offset on every feature."""
    y = rng.random(n) < prevalence
    x = rng.normal(size=(n, d)) + np.where(y[:, None], 0.8, -0.8) + offset
    return x, y


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x, y = _draw(rng, 400, 0.5)
    return bs.fit_source(bs.PNEUMONIA_BINARY, [x], y.astype(np.int64), np.arange(len(y)).astype(str))


def _rows(fitted, x, y, draws=4):
    part = bs.Part(fitted, x, y, _binary_dataset(y), np.arange(len(y)).astype(str))
    return {r["remedy"]: r for r in bs.arm_rows("synthetic", [part], draws=draws, resamples=50)}


def test_covariate_shift_breaks_the_point_and_standardisation_restores_it(fitted):
    rng = np.random.default_rng(1)
    x, y = _draw(rng, 600, 0.5, offset=1.0)      # every feature moved towards the pneumonia side
    rows = _rows(fitted, x, y)
    assert rows["none"]["d_spec"] < -0.3          # the stored point calls most normal cases pneumonia
    assert bs.gap(rows["std"]) <= bs.WITHIN       # the site's own statistics undo a pure offset
    assert bs.gap(rows["std"]) < bs.gap(rows["none"])
    assert rows["none"]["auc"]["value"] == pytest.approx(rows["std"]["auc"]["value"], abs=0.01)  # ranking kept
    refit = rows["refit"]
    assert refit["n"] == 600 - bs.REFIT_N and refit["draws"]["n"] == 4
    assert refit["sensitivity"]["value"] >= 0.85 and refit["specificity"]["value"] >= 0.85
    assert 0.9 <= refit["ceiling_spec_at_target_sens"] <= 1.0    # two classes 1.6 apart: the target is reachable
    assert rows["none@rest"]["n"] == refit["n"]


def test_prior_shift_is_estimated_and_leaves_the_rule_point(fitted):
    rng = np.random.default_rng(2)
    x, y = _draw(rng, 800, 0.15)                  # the same images' distribution, 15% instead of 50% pneumonia
    rows = _rows(fitted, x, y)
    em = rows["em"]["em_estimates"][0]["intervals"]["PNEUMONIA"]
    assert em["low"] <= y.mean() <= em["high"]
    assert abs(rows["em"]["est_prevalence"] - y.mean()) < 0.04
    assert bs.gap(rows["none"]) <= bs.WITHIN      # class-conditional rates hold under prior shift
    # Standardising to the training mix reads the new class mix as a covariate shift; to the estimated mix it does not.
    assert bs.gap(rows["std"]) > 0.1
    assert bs.gap(rows["std(q)"]) <= bs.WITHIN
    # The rule-kept threshold makes the same calls as no adaptation on a two-class view ...
    assert rows["em-rule"]["sensitivity"] == rows["none"]["sensitivity"]
    assert rows["em-rule"]["specificity"] == rows["none"]["specificity"]
    # ... while keeping the number on the adjusted scale trades sensitivity for specificity at a lower prevalence.
    assert rows["em"]["sensitivity"]["value"] < rows["none"]["sensitivity"]["value"]
    assert rows["em"]["specificity"]["value"] >= rows["none"]["specificity"]["value"]


def test_table_and_verdicts_name_every_arm_and_remedy(fitted):
    rng = np.random.default_rng(3)
    x, y = _draw(rng, 800, 0.5, offset=1.0)
    part = bs.Part(fitted, x, y, _binary_dataset(y), np.arange(len(y)).astype(str))
    rows = bs.arm_rows("CXR -> synthetic", [part], draws=2, resamples=20)
    text = bs.table_text(rows)
    for remedy in ("out-of-fold", "none", "em", "em-rule", "std", "std+em", "std(q)", "refit40", "none@rest"):
        assert f" {remedy} " in text
    verdicts = "\n".join(bs.verdicts(rows))
    assert "CXR -> synthetic: label-free within 0.05 of out-of-fold? yes (best std" in verdicts
    assert "CXR -> synthetic: refit on 40 reaches" in verdicts
    json.dumps(rows)


def test_auc_of_two_folds_ignores_each_fold_s_own_monotone_map():
    rng = np.random.default_rng(4)
    truths = [rng.random(200) < 0.5 for _ in range(2)]
    scores = [rng.normal(size=200) + 1.2 * t for t in truths]
    moved = [scores[0], 3 * scores[1] + 5]          # one fold's scores moved as a per-fold adaptation would
    before, after = bs.combined_auc(truths, scores), bs.combined_auc(truths, moved)
    assert after["value"] == pytest.approx(before["value"]) and after["low"] == pytest.approx(before["low"])
    per_fold = [bs.roc_auc(t, s).value for t, s in zip(truths, scores)]
    assert min(per_fold) <= before["value"] <= max(per_fold)
    # Pooling the two folds' scores would have read the move as a loss of ranking.
    assert bs.roc_auc(np.concatenate(truths), np.concatenate(moved)).value < before["value"] - 0.05


def test_prevalence_rows_hit_the_mix_with_whole_patients():
    truth = np.array([True] * 60 + [False] * 40)
    groups = np.array([f"p{i // 2}" for i in range(100)])   # two images per patient
    rows = np.arange(100)
    low = bs.prevalence_rows(truth, groups, rows, 0.1, seed=0)       # every negative kept, positives drawn
    assert (~truth[low]).sum() == 40 and abs(truth[low].mean() - 0.1) < 0.04
    mid = bs.prevalence_rows(truth, groups, rows, 0.55, seed=0)      # 49 positives needed, 60 there
    assert (~truth[mid]).sum() == 40 and abs(truth[mid].mean() - 0.55) < 0.02
    high = bs.prevalence_rows(truth, groups, rows, 0.75, seed=0)     # 120 positives needed: negatives drawn instead
    assert truth[high].sum() == 60 and abs(truth[high].mean() - 0.75) < 0.02
    for chosen in (low, mid, high):
        taken = set(groups[chosen])
        assert all(set(np.flatnonzero(groups == g)) <= set(chosen) for g in taken)


def _film(rng, size=(96, 72)) -> Image.Image:
    """A smooth random grey 'film' (correlations between two different ones stay far below the match bar)."""
    small = rng.integers(0, 256, size=(size[1] // 12, size[0] // 12)).astype(np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


def test_every_shift_makes_a_grey_image_that_differs_as_named(tmp_path):
    rng = np.random.default_rng(0)
    film = _film(rng)
    out = {name: fn(film, np.random.default_rng(1)) for name, fn in bs.SHIFTS.items()}
    assert all(im.mode == "L" for im in out.values())
    assert np.array_equal(np.asarray(out["resaved"]), np.asarray(film))
    assert np.asarray(out["gamma 0.6"]).mean() > np.asarray(film).mean() > np.asarray(out["gamma 1.6"]).mean()
    assert np.ptp(np.asarray(out["low contrast"])) <= 128
    assert out["crop 80%"].size == (76, 58) and out["margin +12%"].size[0] > film.size[0]
    w, h = out["letterbox 16:9"].size
    assert abs(w / h - 16 / 9) < 0.02 and np.asarray(out["letterbox 16:9"])[:, :5].max() == 0
    assert out["rotate 5 deg"].size == film.size and not np.array_equal(out["rotate 5 deg"], film)
    assert (np.asarray(out["text markers"]) == 255).sum() > 20


def test_shifted_copies_are_written_once(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        _film(rng).save(tmp_path / f"f{i}.png")
    table = pd.DataFrame({"image_id": [f"NORMAL/f{i}.png" for i in range(3)],
                          "path": [str(tmp_path / f"f{i}.png") for i in range(3)], "label": "NORMAL",
                          "patient_id": [f"p{i}" for i in range(3)], "split": "train"})
    ds = bs.Dataset(table, bs.PNEUMONIA_BINARY, str(tmp_path))
    first = bs.shifted_dataset(ds, np.array([0, 2]), "text markers", tmp_path / "shifted")
    assert list(first.table["image_id"]) == ["NORMAL/f0.png", "NORMAL/f2.png"]
    stamp = [Path(p).stat().st_mtime_ns for p in first.table["path"]]
    again = bs.shifted_dataset(ds, np.array([0, 2]), "text markers", tmp_path / "shifted")
    assert [Path(p).stat().st_mtime_ns for p in again.table["path"]] == stamp
    assert first.fingerprint == again.fingerprint


def _cxr_folder(root: Path, rng, per_class: int) -> Path:
    """Kermany CXR layout; pneumonia films are brighter in the middle so even random features separate them."""
    for label, stem in (("NORMAL", "IM-{:04d}-0001"), ("PNEUMONIA", "person{}_bacteria_1"),
                        ("PNEUMONIA", "person{}_virus_1")):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = np.asarray(_film(rng), dtype=float)
            if label == "PNEUMONIA":
                im[18:54, 24:72] = np.clip(im[18:54, 24:72] + 90, 0, 255)
            offset = 0 if "IM" in stem else (1000 if "bacteria" in stem else 2000)
            Image.fromarray(im.astype(np.uint8)).save(folder / (stem.format(offset + i) + ".jpeg"), quality=90)
    return root


def _npz(path: Path, cxr_root: Path, rng, n_per_class: int, copies: int) -> Path:
    """A PneumoniaMNIST-style file: `copies` 28 px copies of CXR films (centre crop) plus unrelated films."""
    films = sorted((cxr_root / "train").rglob("*.jpeg"))[:copies]
    images, labels = [], []
    for f in films:
        im = Image.open(f).convert("L")
        w, h = im.size
        s = min(w, h)
        images.append(np.asarray(im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                                 .resize((28, 28), Image.BICUBIC)))
        labels.append(0 if "NORMAL" in str(f) else 1)
    for label in (0, 1):
        for _ in range(n_per_class):
            im = np.asarray(_film(rng, (28, 28)), dtype=float)
            if label:
                im[7:21, 7:21] = np.clip(im[7:21, 7:21] + 90, 0, 255)
            images.append(im.astype(np.uint8))
            labels.append(label)
    arr, lab = np.array(images, dtype=np.uint8), np.array(labels, dtype=np.uint8)[:, None]
    np.savez(path, train_images=arr[::2], train_labels=lab[::2], val_images=arr[1::2], val_labels=lab[1::2])
    return path


def test_films_shared_by_the_two_sources_are_found(tmp_path):
    from core.data import load_dataset

    rng = np.random.default_rng(0)
    cxr_root = _cxr_folder(tmp_path / "cxr", rng, per_class=4)
    npz = _npz(tmp_path / "pneumoniamnist_tiny.npz", cxr_root, rng, n_per_class=6, copies=5)
    cxr = load_dataset(cxr_root, "cxr-kermany")
    same = bs.pmnist_matches(cxr, npz)
    pm = load_dataset(npz, None)
    assert len(same) == len(pm) == 17
    # The first 5 images written were copies: positions 0, 2, 4 went to train (rows 0-2 of its 9), 1 and 3 to val
    # (rows 9 and 10: the reader lists train, then val).
    copy_rows = [0, 1, 2, 9, 10]
    assert same[copy_rows].all() and same.sum() == 5


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_on_tiny_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cxr_root = _cxr_folder(tmp_path / "cxr", rng, per_class=14)
    npz = _npz(tmp_path / "pneumoniamnist_tiny.npz", cxr_root, rng, n_per_class=16, copies=4)
    out = tmp_path / "sites.json"
    argv = ["--backbone", "test_efficientnet", "--quick", "--views", "1", "--pmnist-n", "30", "--draws", "2",
            "--refit-n", "10", "--shifts", "text markers", "--cache", str(tmp_path / "cache"), "--cxr", str(cxr_root),
            "--pmnist", str(npz), "--out", str(out)]
    assert bs.main(argv) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert {r["arm"] for r in rows} == {
        "CXR -> PneumoniaMNIST", "PneumoniaMNIST -> CXR", "prevalence 75% -> 10%", "prevalence 75% -> 30%",
        "prevalence 75% -> 60%", "held-out CXR (no shift)", "shift: text markers"}
    assert "4 of 36 images are CXR-sample films (left out); 30 drawn" in printed
    assert "CXR -> PneumoniaMNIST: refit on 10 reaches" in printed
    # A second run reads every feature from the cache.
    assert bs.main(argv) == 0
    assert "features computed this run: 0 images" in capsys.readouterr().out
