"""Synthetic retinal OCT B-scans (CNV, DME, DRUSEN, NORMAL) for the built-in demo: procedural, not real patients."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.special import expit

from core.errors import InputError

CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
GENERATOR_VERSION = 1
JPEG_QUALITY = 92
Box = tuple[int, int, int, int]  # x0, y0, x1, y1: inclusive pixel coordinates inside the image

# Bands from the vitreous down, with display brightness (0..1) read off the mean column profile of real
# Spectralis B-scans: dark vitreous, bright nerve fibre layer, dark nuclear layers, bright EZ/RPE, choroid.
BANDS = ("vitreous", "rnfl", "gcl", "ipl", "inl", "opl", "onl", "elm", "myoid", "ez", "iz", "fluid", "rpe",
         "sub_rpe", "choroid", "sclera")
LEVEL = dict(vitreous=0.10, rnfl=0.62, gcl=0.45, ipl=0.49, inl=0.25, opl=0.47, onl=0.20, elm=0.36, myoid=0.26,
             ez=0.70, iz=0.44, fluid=0.08, rpe=0.84, sub_rpe=0.45, choroid=0.58, sclera=0.58)
# Thickness of each retinal band away from the fovea, as a fraction of the image height.
THICK = dict(rnfl=0.016, gcl=0.032, ipl=0.024, inl=0.019, opl=0.012, onl=0.04, elm=0.004, myoid=0.007,
             ez=0.008, iz=0.006, rpe=0.015)
# Severity of disease per patient: Beta(a, b). Mild cases (near 0) look almost normal, which is what makes
# the classes overlap a little; calibrated so a linear probe on frozen ImageNet features scores ~85-98%.
SEVERITY_BETA = (2.2, 1.1)

LESIONS_FILE = "lesions.csv"  # the lesion boxes written next to the demo's train/ and test/ folders


def _dome(u: np.ndarray, power: float) -> np.ndarray:
    return np.clip(1.0 - u * u, 0.0, None) ** power


def _smooth_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance random curve over n columns with correlation length sigma (columns)."""
    v = ndimage.gaussian_filter1d(rng.standard_normal(n), max(sigma, 0.5), mode="reflect")
    return v / (v.std() + 1e-9)


def _smooth_2d(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    v = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    return v / (v.std() + 1e-6)


def draw_patient(label: str, rng: np.random.Generator) -> dict:
    """Traits shared by all B-scans of one patient: anatomy, disease severity and phenotype, device settings."""
    if label not in CLASSES:
        raise InputError(f"unknown OCT class {label!r}; expected one of {', '.join(CLASSES)}")
    return {
        "label": label,
        "thickness": float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.25)),
        "rnfl": float(rng.uniform(0.7, 1.4)),
        "nasal_side": float(rng.choice([-1.0, 1.0])),
        "pit_depth": float(rng.uniform(0.8, 1.0)),
        "pit_width": float(rng.uniform(0.08, 0.13)),
        "choroid": float(rng.uniform(0.05, 0.11)),
        "severity": 0.0 if label == "NORMAL" else float(rng.beta(*SEVERITY_BETA)),
        "lesion_size": float(rng.uniform(0.7, 1.3)),
        "speckle": float(rng.uniform(3.0, 7.0)),
        "gain": float(rng.normal(1.1, 0.08)),
    }


def render_bscan(label: str, rng: np.random.Generator, size: int = 256,
                 patient: dict | None = None) -> tuple[np.ndarray, list[Box]]:
    """One synthetic B-scan (size x size, uint8 grayscale) and its lesion boxes (none for NORMAL).
    Patient traits are drawn from rng unless given, so a single call makes an image of a new patient."""
    patient = patient or draw_patient(label, rng)
    H = W = int(size)
    sc = H / 256.0  # texture scales (speckle grain, blur) are set for 256 px and follow the image size
    x = (np.arange(W) + 0.5) / W
    sev = 0.0 if label == "NORMAL" else float(np.clip(patient["severity"] * np.exp(rng.normal(0, 0.25)), 0.02, 1))
    size_f = patient["lesion_size"]

    # Geometry: Bruch's membrane as a tilted, curved, slightly wavy line; the fovea somewhere near the middle.
    u = x - 0.5
    bruch = (rng.uniform(0.45, 0.62) + rng.uniform(-0.18, 0.18) * u - rng.uniform(-0.2, 0.45) * u * u
             + 0.006 * _smooth_1d(rng, W, 0.15 * W)) * H
    xf = rng.uniform(0.36, 0.64)
    off_centre = rng.random() < 0.15  # a slice beside the fovea shows a shallow pit
    pit_depth = patient["pit_depth"] * (rng.uniform(0.2, 0.6) if off_centre else 1.0)
    if label == "DME":  # oedema fills in the foveal pit
        pit_depth *= 1 - 0.6 * sev
    pw = patient["pit_width"] * rng.uniform(0.9, 1.1)
    d = (x - xf) / pw
    pit = np.exp(-np.abs(d) ** rng.uniform(1.7, 2.3))
    rim = np.exp(-((np.abs(d) - 1.8) / 1.2) ** 2)
    t = {k: np.full(W, v * patient["thickness"] * H) for k, v in THICK.items()}
    inner = (1 - pit_depth * pit) * (1 + 0.25 * rim)
    for k in ("gcl", "ipl", "inl", "opl"):
        t[k] = t[k] * inner
    nasal = np.clip(patient["nasal_side"] * (x - xf), 0, None)
    t["rnfl"] = t["rnfl"] * patient["rnfl"] * (1 - pit_depth * pit) * (0.6 + 5.0 * nasal)
    t["onl"] = t["onl"] * (1 + 0.4 * pit)  # Henle fibres pile up at the foveal centre
    t["fluid"] = np.zeros(W)
    sub_rpe = np.zeros(W)  # elevation of the RPE off Bruch's membrane (drusen, pigment epithelial detachment)
    level = {k: np.float32(v) for k, v in LEVEL.items()}
    boxes: list[tuple] = []  # x0, y0, x1, y1 in pixels, or a druse to place once the bands are known
    cysts: list[tuple[float, float, float, str]] = []  # centre x (frac), rx (px), ry (px), band
    shrm = None

    if label == "DME":
        # Diabetic macular oedema: intraretinal cysts in the inner nuclear / outer nuclear layers, retinal
        # thickening and a flattened foveal contour.
        wth = rng.uniform(0.1, 0.2)
        xc = xf + rng.normal(0, 0.04)
        g = np.exp(-((x - xc) / wth) ** 2)
        thick = sev * rng.uniform(0.8, 2.0)
        for k in ("inl", "opl", "onl"):
            t[k] = t[k] * (1 + thick * g)
        push = {"inl": np.zeros(W), "onl": np.zeros(W)}
        for _ in range(1 + min(rng.poisson(1 + 6 * sev), 9)):
            for _attempt in range(6):  # cysts sit side by side in a band, not on top of each other
                band = "onl" if rng.random() < 0.55 else "inl"
                rx = H * size_f * (0.012 + 0.04 * sev * rng.uniform(0.4, 1.0)) * (1.0 if band == "onl" else 0.6)
                cx = float(np.clip(xc + rng.normal(0, 0.8 * wth), 0.05, 0.95))
                if all(b != band or abs(cx - c) * W > rx + r for c, r, _, b in cysts):
                    break
            else:
                continue
            ry = rx * rng.uniform(0.7, 1.3)
            # The cyst pushes its band open; neighbours share the bulge rather than stacking it.
            push[band] = np.maximum(push[band], 1.3 * ry * _dome((x - cx) * W / (2.5 * rx), 1.5))
            cysts.append((cx, rx, ry, band))
        for band, extra in push.items():  # swollen tissue bulges smoothly, it does not tent over each cyst
            t[band] = t[band] + ndimage.gaussian_filter1d(extra, 0.025 * W, mode="nearest")
        if rng.random() < 0.25 * sev:  # some DME eyes also have a little subretinal fluid
            t["fluid"] = H * sev * rng.uniform(0.01, 0.03) * _dome((x - xf) / rng.uniform(0.05, 0.12), 1.5)
    elif label == "CNV":
        # Neovascular AMD: RPE elevation (fibrovascular PED) with heterogeneous material beneath, subretinal
        # fluid lifting the retina, hyper-reflective material above the RPE and a disrupted ellipsoid zone.
        xc = float(np.clip(xf + rng.normal(0, 0.06), 0.15, 0.85))
        wp = rng.uniform(0.07, 0.18) * (0.6 + 0.6 * sev) * size_f
        rough = np.clip(1 + 0.3 * _smooth_1d(rng, W, 0.02 * W), 0.3, None)  # an irregular, lumpy RPE
        sub_rpe = H * (0.012 + sev * rng.uniform(0.025, 0.065)) * _dome((x - xc) / wp, 1.0) * rough
        t["onl"] = np.maximum(t["onl"] - 0.4 * sub_rpe, 0.4 * t["onl"])  # the inner retina drapes more smoothly
        if rng.random() < 0.5 + 0.45 * sev:
            ws = wp * rng.uniform(1.0, 2.2)
            t["fluid"] = H * sev * rng.uniform(0.01, 0.06) * _dome((x - xc - rng.normal(0, 0.02)) / ws, 1.5)
        if rng.random() < 0.3 + 0.5 * sev:
            shrm = (xc + rng.normal(0, 0.02), wp * rng.uniform(0.3, 0.8), H * (0.004 + 0.025 * sev * rng.random()))
        if rng.random() < 0.25 * sev:
            cysts.append((float(np.clip(xc + rng.normal(0, 0.05), 0.05, 0.95)), H * 0.012 * size_f,
                          H * 0.01 * size_f, "inl"))
    elif label == "DRUSEN":
        # Dry AMD: several small dome-shaped RPE elevations of medium-reflective material; the outer nuclear
        # layer thins over them.
        for _ in range(3 + min(rng.poisson(1 + 5 * sev), 10)):
            xi = float(np.clip(xf + rng.normal(0, 0.15), 0.06, 0.94))
            wi = (rng.uniform(0.015, 0.035) + sev * rng.uniform(0, 0.025)) * size_f
            hi = H * (0.008 + sev * rng.uniform(0.015, 0.045)) * size_f
            bump = hi * _dome((x - xi) / wi, 0.8)
            sub_rpe = np.maximum(sub_rpe, bump)
            boxes.append(("druse", xi, wi, hi))  # resolved to pixels once the bands are placed
        t["onl"] = np.maximum(t["onl"] - 0.5 * sub_rpe, 0.3 * t["onl"])

    # Stack the bands upward from Bruch's membrane: bottom edge of each band, then its top edge.
    order = ("rnfl", "gcl", "ipl", "inl", "opl", "onl", "elm", "myoid", "ez", "iz", "fluid", "rpe")
    edges = [bruch - sub_rpe]
    for k in reversed(order):
        edges.insert(0, edges[0] - t[k])
    edges.append(bruch)
    edges.append(bruch + patient["choroid"] * rng.uniform(0.9, 1.1) * H)
    band_top = dict(zip(order + ("sub_rpe",), edges[:-2]))
    band_bottom = dict(zip(order + ("sub_rpe",), edges[1:-1]))

    Y = (np.arange(H, dtype=np.float32) + 0.5)[:, None]
    steps = [expit((Y - np.asarray(e, np.float32)[None, :]) / 0.45) for e in edges]
    maps = {k: np.broadcast_to(level[k], (H, W)) for k in BANDS}
    vessels = expit((_smooth_2d(rng, (H, W), (2.2 * sc, 4.5 * sc)) - 0.2) * 3.0)
    depth = np.clip((Y - bruch[None, :]) / (patient["choroid"] * H), 0, None)
    # Below Bruch's membrane: a bright vascular choroid with dark lumens fading into the sclera, no hard edge.
    fade = 0.6 * np.exp(-depth) + 0.4 * np.exp(-depth * patient["choroid"] / 0.2)
    lumens = 0.6 * vessels * np.clip(depth, 0.25, 1.0) * np.exp(-np.clip(depth - 1.2, 0, None))
    maps["choroid"] = maps["sclera"] = level["choroid"] * fade * (1 - lumens)
    if label == "CNV":
        maps["sub_rpe"] = (0.42 + 0.12 * _smooth_2d(rng, (H, W), (1.2 * sc, 1.5 * sc))).astype(np.float32)
        lesion = np.clip(sub_rpe / (sub_rpe.max() + 1e-6), 0, 1)[None, :]
        maps["ez"] = level["ez"] - (level["ez"] - level["onl"]) * 0.8 * sev * lesion
    img = np.zeros((H, W), np.float32)
    prev = np.ones((H, W), np.float32)
    for k, s in zip(BANDS, steps + [np.zeros((H, W), np.float32)]):
        img += maps[k] * (prev - s)
        prev = s

    for cx, rx, ry, band in cysts:
        col = min(int(cx * W), W - 1)
        cy = 0.5 * (band_top[band][col] + band_bottom[band][col])
        r2 = ((x[None, :] - cx) * W / rx) ** 2 + ((Y - cy) / ry) ** 2
        m = expit((1 - r2) * 3.0 * max(rx, 1.0))
        img = img * (1 - m) + level["fluid"] * m
        boxes.append((cx * W - rx, cy - ry, cx * W + rx, cy + ry))
    if shrm is not None:
        sx, swid, sh = shrm
        top = band_top["rpe"] - sh * _dome((x - sx) / swid, 0.7)
        m = expit((Y - top[None, :]) / 0.6) * (1 - steps[BANDS.index("rpe") - 1]) * (np.abs(x - sx) < swid)[None, :]
        img = img * (1 - m) + (0.62 + 0.1 * _smooth_2d(rng, (H, W), (sc, sc))) * m
    if label == "CNV":
        cols = np.nonzero(sub_rpe + t["fluid"] > 0.5)[0]
        if cols.size == 0:
            cols = np.array([int(np.argmax(sub_rpe))])
        tops = band_top["ez"][cols] - (shrm[2] if shrm else 0)
        boxes.append((cols[0], tops.min(), cols[-1] + 1, bruch[cols].max()))
    if label == "DME" and t["fluid"].max() > 0.5:
        cols = np.nonzero(t["fluid"] > 0.5)[0]
        boxes.append((cols[0], band_top["fluid"][cols].min(), cols[-1] + 1, band_bottom["fluid"][cols].max()))
    resolved = []
    for b in boxes:
        if b[0] == "druse":
            _, xi, wi, hi = b
            cols = np.arange(max(int((xi - wi) * W), 0), min(int((xi + wi) * W) + 1, W))
            resolved.append((cols[0], band_top["rpe"][cols].min(), cols[-1] + 1, bruch[cols].max()))
        else:
            resolved.append(b)

    # Retinal vessels in the ganglion cell layer cast vertical shadows over everything beneath them.
    for xv in rng.uniform(0.03, 0.97, rng.integers(2, 7)):
        col = min(int(xv * W), W - 1)
        g = np.exp(-((x - xv) * W / (rng.uniform(1.5, 3.5) * sc + 0.5)) ** 2)[None, :]
        img *= 1 - rng.uniform(0.08, 0.25) * g * expit((Y - band_bottom["gcl"][col]) / 0.6)
    if rng.random() < 0.12:  # a detached posterior hyaloid: faint line in the vitreous, in any class
        hy = band_top["rnfl"] - H * rng.uniform(0.03, 0.12) + H * 0.015 * _smooth_1d(rng, W, 0.25 * W)
        img += 0.15 * np.exp(-((Y - hy[None, :]) / (1.2 * sc + 0.3)) ** 2) * (x > rng.uniform(0, 0.6))[None, :]

    # Speckle: correlated multiplicative gamma noise, shown on a log scale like the scanner does.
    k = patient["speckle"] * rng.uniform(0.85, 1.15)
    speck = ndimage.gaussian_filter(rng.gamma(k, 1.0 / k, (H, W)).astype(np.float32), (0.3 * sc, 0.45 * sc))
    img = img + (0.1 + 0.12 * img) * np.log(np.clip(speck, 1e-3, None)) * 1.6
    img = ndimage.gaussian_filter(img, rng.uniform(0.1, 0.7) * sc)
    gain = patient["gain"] * rng.normal(1.0, 0.05)
    out = np.clip(255 * (gain * img + rng.normal(0, 0.02)), 0, 255)
    if rng.random() < 0.45:  # white wedge where the scanner's registration moved the frame, in any class
        a, b = rng.uniform(-0.06, 0.07, 2) * H
        out[Y[:, 0][:, None] < (a + (b - a) * x)[None, :]] = 255
    if rng.random() < 0.25:
        a, b = H - rng.uniform(-0.06, 0.07, 2) * H
        out[Y[:, 0][:, None] > (a + (b - a) * x)[None, :]] = 255
    return out.astype(np.uint8), [_clip_box(b, W, H) for b in resolved]


def _clip_box(b, w: int, h: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in b)
    x0, y0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
    x1, y1 = int(np.clip(np.ceil(x1), x0, w - 1)), int(np.clip(np.ceil(y1), y0, h - 1))
    return x0, y0, x1, y1


README = """SYNTHETIC DATA - NOT REAL PATIENTS

These retinal OCT B-scans were drawn by a program (core/data/synthetic.py, the built-in demo of this
dashboard). No person was scanned. They imitate the layout of Kermany et al. (Cell 2018) OCT2017:
train|test/CLASS/CLASS-PATIENT-N.jpeg with classes CNV, DME, DRUSEN and NORMAL. "Patients" are invented
ids that share anatomy, device settings and disease severity across their images; no patient appears in
more than one class or split.

Lesions: CNV = RPE elevation with sub-RPE material, subretinal fluid and hyper-reflective material;
DME = intraretinal cysts and thickening; DRUSEN = small RPE bumps; NORMAL = intact layers.
Mild cases look almost normal on purpose, so that a good model is not 100% accurate.

lesions.csv lists each lesion's bounding box: path (relative to this folder), label, x0, y0, x1, y1
as inclusive pixel coordinates inside the image. demo.json holds the generation parameters.
Do not use these images for any clinical purpose or to make claims about real-world accuracy.
"""


def _plan(per_class: int, test_per_class: int, seed: int) -> list[dict]:
    """Patients (unique ids across classes and splits) and how many images each one has."""
    rng = np.random.default_rng([seed, 0])
    groups = []
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label in CLASSES:
            left = count
            while left > 0:
                n = int(min(left, rng.integers(1, 7)))
                groups.append({"split": split, "label": label, "n_images": n})
                left -= n
    ids = 1000 + rng.choice(9_999_000, size=len(groups), replace=False)  # 4-7 digits, like Kermany's
    for g, pid in zip(groups, ids):
        g["patient_id"] = str(int(pid))
    return groups


def _check(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise InputError(f"demo data: {name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def generate_demo_dataset(out_dir, per_class: int = 120, test_per_class: int = 40, size: int = 256,
                          seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the synthetic OCT demo to out_dir (train/ and test/ in Kermany naming, lesions.csv, README.txt,
    demo.json). Written into a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half dataset; an existing out_dir is replaced only when it is empty or an earlier demo.
    Same seed and parameters -> byte-identical files. Returns counts per split/class, n_patients, seconds."""
    per_class = _check("per_class", per_class, 1, 100_000)
    test_per_class = _check("test_per_class", test_per_class, 0, 100_000)
    size = _check("size", size, 32, 2048)
    seed = _check("seed", seed, 0, 2**63 - 1)
    out_dir = Path(out_dir)
    if out_dir.exists() and not _replaceable(out_dir):
        raise InputError(f"demo data: {out_dir} exists and is not an earlier synthetic demo; "
                         "choose an empty or new folder")
    started = time.perf_counter()
    groups = _plan(per_class, test_per_class, seed)
    total = sum(g["n_images"] for g in groups)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        counts = {s: {c: 0 for c in CLASSES} for s in ("train", "test")}
        box_rows = []
        done = 0
        if progress:
            progress(0, total)
        for gi, g in enumerate(groups):
            folder = tmp / g["split"] / g["label"]
            folder.mkdir(parents=True, exist_ok=True)
            patient = draw_patient(g["label"], np.random.default_rng([seed, 1, gi]))
            for n in range(1, g["n_images"] + 1):
                # One generator per image from (seed, image index): results don't depend on order or workers.
                img, boxes = render_bscan(g["label"], np.random.default_rng([seed, 2, done]), size, patient)
                rel = f"{g['split']}/{g['label']}/{g['label']}-{g['patient_id']}-{n}.jpeg"
                Image.fromarray(img).save(tmp / rel, format="JPEG", quality=JPEG_QUALITY)
                box_rows += [(rel, g["label"], *b) for b in boxes]
                counts[g["split"]][g["label"]] += 1
                done += 1
                if progress:
                    progress(done, total)
        with open(tmp / LESIONS_FILE, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["path", "label", "x0", "y0", "x1", "y1"])
            writer.writerows(box_rows)
        (tmp / "README.txt").write_text(README, encoding="utf-8")
        params = {"synthetic": True, "generator": "core.data.synthetic", "generator_version": GENERATOR_VERSION,
                  "task": "oct-kermany", "classes": list(CLASSES), "per_class": per_class,
                  "test_per_class": test_per_class, "size": size, "seed": seed, "jpeg_quality": JPEG_QUALITY,
                  "severity_beta": list(SEVERITY_BETA), "counts": counts, "n_images": total,
                  "n_patients": len(groups), "n_lesion_boxes": len(box_rows),
                  "box_convention": "x0, y0, x1, y1 inclusive pixel coordinates, path relative to this folder"}
        (tmp / "demo.json").write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out_dir": str(out_dir), "counts": counts, "n_images": total, "n_patients": len(groups),
            "n_lesion_boxes": len(box_rows), "seconds": round(time.perf_counter() - started, 3)}


def _replaceable(path: Path) -> bool:
    """Only an empty folder or an earlier synthetic demo may be replaced: never a user's own files."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return json.loads((path / "demo.json").read_text(encoding="utf-8")).get("synthetic") is True
    except (OSError, ValueError, AttributeError):
        return False


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder into place; an old demo is moved aside first and deleted only afterwards."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
