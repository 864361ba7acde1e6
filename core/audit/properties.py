"""Image properties per split and class: size, aspect, bit depth, channels, file format, intensity, JPEG quality."""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERIC = ("width", "height", "aspect", "intensity_mean", "intensity_std", "jpeg_quality")
CATEGORICAL = ("bit_depth", "channels", "file_format")


def _numeric(values: pd.Series) -> dict | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return None
    return {"n": int(len(values)), "mean": float(values.mean()), "sd": float(values.std(ddof=0)),
            "min": float(values.min()), "median": float(values.median()), "max": float(values.max())}


def _counts(values: pd.Series) -> dict:
    return {str(k): int(v) for k, v in values.dropna().value_counts().sort_index().items()}


def summarise(scan: pd.DataFrame) -> dict:
    """The properties of one group of images (numbers: n/mean/sd/min/median/max; categories: counts)."""
    ok = scan[scan["error"].isna()]
    out = {"n": int(len(scan)), "unreadable": int(scan["error"].notna().sum())}
    out.update({name: _numeric(ok[name]) for name in NUMERIC})
    out.update({name: _counts(ok[name]) for name in CATEGORICAL})
    return out


def properties(scan: pd.DataFrame) -> dict:
    """`all` images, and one entry per (split, class) present."""
    groups = [{"split": split, "class": label, **summarise(group)}
              for (split, label), group in scan.groupby(["split", "label"], sort=True)]
    return {"all": summarise(scan), "by_split_class": groups}


def size_words(scan: pd.DataFrame) -> str:
    """'all 224 x 224 squares' / 'landscape, median 512 x 380' / 'mixed sizes, median ...', for reasons."""
    ok = scan[scan["error"].isna()]
    if ok.empty:
        return "unreadable"
    sizes = set(zip(ok["width"], ok["height"]))
    if len(sizes) == 1:
        w, h = next(iter(sizes))
        return f"all {w} x {h}" + (" squares" if w == h else (" landscape" if w > h else " portrait"))
    aspect = float(np.median(ok["aspect"]))
    shape = "landscape" if aspect > 1.05 else ("portrait" if aspect < 0.95 else "roughly square")
    return f"{shape}, median {int(np.median(ok['width']))} x {int(np.median(ok['height']))}"
