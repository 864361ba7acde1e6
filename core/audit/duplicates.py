"""Duplicate images: identical decoded pixels (exact) and near-identical perceptual hashes (near), within one
dataset and across two."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet

# pHash is 64 bits. Measured on the 750 Kermany chest X-rays of ../shared/data: copies of 60 films re-saved as JPEG
# q60, resized to 80 % or squashed to 224 x 224 stayed within 2 bits of their original, while the two closest
# different films were 4 bits apart (6 such pairs of 280,875). So <= 2 bits: copies, not look-alikes.
NEAR_THRESHOLD_BITS = 2
EXACT_METHOD = "sha256 of the decoded pixels (mode, size and values), so a PNG and a JPEG-free re-save match"
NEAR_METHOD = "perceptual hash (pHash, 64 bits, imagehash)"
_CHUNK = 2048


def _hash_bits(hex_hashes: pd.Series) -> np.ndarray:
    return np.array([int(h, 16) for h in hex_hashes], dtype=np.uint64)


def _close_pairs(a: np.ndarray, b: np.ndarray | None, threshold: int) -> list[tuple[int, int]]:
    """(i, j) with Hamming(a[i], b[j]) <= threshold (i < j when b is a itself), in chunks to bound memory."""
    same = b is None
    b = a if same else b
    pairs = []
    for start in range(0, len(a), _CHUNK):
        block = a[start:start + _CHUNK, None] ^ b[None, :]
        dist = np.bitwise_count(block)
        i, j = np.nonzero(dist <= threshold)
        i = i + start
        keep = i < j if same else np.ones(len(i), bool)
        pairs += list(zip(i[keep].tolist(), j[keep].tolist()))
    return pairs


def _groups(n: int, pairs) -> list[list[int]]:
    sets = DisjointSet(range(n))
    for i, j in pairs:
        sets.merge(i, j)
    return [sorted(s) for s in sets.subsets() if len(s) > 1]


def _ordered(groups: list[list[str]]) -> list[list[str]]:
    return sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g))


def exact_duplicates(scan: pd.DataFrame, against: pd.DataFrame | None = None) -> dict:
    """Groups of image ids with identical decoded pixels; `across`: data images identical to `against` images."""
    ok = scan[scan["error"].isna()]
    within = [g["image_id"].tolist() for _, g in ok.groupby("pixel_sha256") if len(g) > 1]
    out = {"method": EXACT_METHOD, "groups": _ordered(within),
           "n_images_in_groups": int(sum(len(g) for g in within)),
           "n_extra_copies": int(sum(len(g) - 1 for g in within)), "across": None}
    if against is not None:
        other = against[against["error"].isna()]
        theirs = other.groupby("pixel_sha256")["image_id"].apply(sorted).to_dict()
        across = [{"data": sorted(g["image_id"]), "against": theirs[h]} for h, g in ok.groupby("pixel_sha256")
                  if h in theirs]
        out["across"] = sorted(across, key=lambda a: a["data"])
    return out


def near_duplicates(scan: pd.DataFrame, against: pd.DataFrame | None = None,
                    threshold: int = NEAR_THRESHOLD_BITS) -> dict:
    """Groups of images whose pHash differ in at most `threshold` of 64 bits (linked transitively), leaving out
    groups whose members are all exact copies of one another (those are in exact_duplicates)."""
    ok = scan[scan["error"].isna()].reset_index(drop=True)
    bits = _hash_bits(ok["phash"])
    groups = []
    for members in _groups(len(ok), _close_pairs(bits, None, threshold)):
        if ok["pixel_sha256"].iloc[members].nunique() > 1:
            groups.append(ok["image_id"].iloc[members].tolist())
    out = {"method": NEAR_METHOD, "threshold": threshold,
           "threshold_text": f"Hamming distance <= {threshold} of 64 pHash bits", "groups": _ordered(groups),
           "n_images_in_groups": int(sum(len(g) for g in groups)), "across": None}
    if against is not None:
        other = against[against["error"].isna()].reset_index(drop=True)
        pairs = _close_pairs(bits, _hash_bits(other["phash"]), threshold)
        matches: dict[int, set[int]] = {}
        for i, j in pairs:
            matches.setdefault(i, set()).add(j)
        across = [{"data": [ok["image_id"].iat[i]], "against": sorted(other["image_id"].iloc[sorted(js)].tolist())}
                  for i, js in matches.items()]
        out["across"] = sorted(across, key=lambda a: a["data"])
    return out


def duplicate_rows_to_drop(exact: dict) -> list[str]:
    """Image ids to leave out so that each exact-duplicate group counts once (its first id is kept)."""
    return [i for group in exact["groups"] for i in group[1:]]


def without_duplicates(frame: pd.DataFrame, exact: dict) -> pd.DataFrame:
    """Rows of a table keyed by image_id (e.g. predictions), each exact-duplicate group kept once."""
    return frame[~frame["image_id"].astype(str).isin(set(duplicate_rows_to_drop(exact)))]
