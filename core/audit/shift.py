"""Shift between test and training data: a test per property, a domain classifier on backbone features, and
the reasons in plain words."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from core.audit.probe import PROBE_METHOD, out_of_fold_probabilities
from core.audit.properties import CATEGORICAL, NUMERIC, size_words

ALPHA = 0.001  # a difference must be this unlikely under "same distribution"...
KS_FLAG = 0.3  # ...and this large (Kolmogorov-Smirnov D) to count: big datasets make tiny differences significant
TVD_FLAG = 0.3  # total variation distance between category shares (0 same, 1 disjoint)
AUC_FLAG = 0.75  # domain classifier: 0.5 = indistinguishable, 1 = always told apart
CV_FOLDS = 5
MAX_PER_SIDE = 1000  # images per dataset for the domain classifier (random, seeded)
_LABELS = {"width": "width", "height": "height", "aspect": "aspect ratio", "intensity_mean": "mean grey level",
           "intensity_std": "grey-level spread (contrast)", "jpeg_quality": "estimated JPEG quality",
           "bit_depth": "bit depth", "channels": "channels", "file_format": "file format"}


def _ok(scan: pd.DataFrame) -> pd.DataFrame:
    return scan[scan["error"].isna()]


def _numeric_test(name: str, a: pd.Series, b: pd.Series) -> dict | None:
    a, b = pd.to_numeric(a, errors="coerce").dropna(), pd.to_numeric(b, errors="coerce").dropna()
    if len(a) < 2 or len(b) < 2:
        return None
    result = stats.ks_2samp(a, b)
    flagged = bool(result.statistic >= KS_FLAG and result.pvalue < ALPHA)
    return {"property": name, "test": "two-sample Kolmogorov-Smirnov", "statistic": float(result.statistic),
            "p_value": float(result.pvalue), "data_median": float(a.median()), "against_median": float(b.median()),
            "flagged": flagged}


def _categorical_test(name: str, a: pd.Series, b: pd.Series) -> dict | None:
    a, b = a.dropna().astype(str), b.dropna().astype(str)
    if a.empty or b.empty:
        return None
    table = pd.crosstab(pd.concat([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))])
    shares = table / table.sum(axis=0)
    tvd = float(0.5 * np.abs(shares.iloc[:, 0] - shares.iloc[:, 1]).sum())
    if len(table) < 2:
        chi2, p = 0.0, 1.0  # one category on both sides: identical
    else:
        chi2, p, _, _ = stats.chi2_contingency(table.to_numpy())
    return {"property": name, "test": "chi-square (contingency)", "statistic": float(chi2), "p_value": float(p),
            "total_variation": tvd, "data": a.value_counts().to_dict(), "against": b.value_counts().to_dict(),
            "flagged": bool(tvd >= TVD_FLAG and p < ALPHA)}


def property_tests(data: pd.DataFrame, against: pd.DataFrame) -> list[dict]:
    a, b = _ok(data), _ok(against)
    tests = [_numeric_test(n, a[n], b[n]) for n in NUMERIC] + [_categorical_test(n, a[n], b[n]) for n in CATEGORICAL]
    return [t for t in tests if t is not None]


def _shares(counts: dict) -> str:
    total = sum(counts.values())
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(items) == 1:
        return f"all {items[0][0]}"
    return ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in items[:3])


def _channel_words(counts: dict) -> str:
    named = {("greyscale" if str(k) == "1" else "colour" if str(k) == "3" else f"{k}-channel"): v
             for k, v in counts.items()}
    return _shares(named)


def reasons(tests: list[dict], data: pd.DataFrame, against: pd.DataFrame, domain: dict | None) -> list[str]:
    """Plain-word sentences for what differs, most visible first."""
    flagged = {t["property"]: t for t in tests if t["flagged"]}
    out = []
    if {"width", "height", "aspect"} & set(flagged):
        out.append(f"test images are {size_words(data)}; training images are {size_words(against)}")
    for name, more, less in (("intensity_mean", "brighter", "darker"),
                             ("intensity_std", "higher in contrast", "lower in contrast"),
                             ("jpeg_quality", "less compressed", "more compressed")):
        if name in flagged:
            t = flagged[name]
            subject = "test JPEGs are" if name == "jpeg_quality" else "test images are"
            word = more if t["data_median"] > t["against_median"] else less
            out.append(f"{subject} {word} ({_LABELS[name]}: median {t['data_median']:.0f} vs "
                       f"{t['against_median']:.0f} in training)")
    for name in CATEGORICAL:
        if name in flagged:
            t = flagged[name]
            words = _channel_words if name == "channels" else (
                lambda c: _shares({f"{k}-bit": v for k, v in c.items()}) if name == "bit_depth" else _shares(c))
            out.append(f"{_LABELS[name]}: test images are {words(t['data'])}; training images are "
                       f"{words(t['against'])}")
    if domain and domain.get("flagged"):
        out.append(f"a classifier tells test from training images apart on backbone features (cross-validated "
                   f"AUC {domain['auc']:.2f}; about 0.5 would mean alike)")
    return out


def sample_rows(n: int, limit: int = MAX_PER_SIDE, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def domain_classifier(x_data: np.ndarray, x_against: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> dict:
    """Cross-validated ROC AUC of a logistic regression telling data (1) from training (0) features."""
    from sklearn.metrics import roc_auc_score

    n_a, n_b = len(x_data), len(x_against)
    folds = min(folds, n_a, n_b)
    base = {"method": f"{PROBE_METHOD}, stratified k-fold on backbone features", "n_data": n_a,
            "n_against": n_b, "folds": folds, "threshold": AUC_FLAG}
    if folds < 2:
        return {**base, "auc": None, "flagged": False, "note": "too few images on one side for cross-validation"}
    x = np.vstack([x_data, x_against]).astype(np.float64)
    y = np.r_[np.ones(n_a), np.zeros(n_b)].astype(np.int64)
    scores = out_of_fold_probabilities(x, y, folds, seed)[:, 1]
    auc = float(roc_auc_score(y, scores))
    return {**base, "auc": auc, "flagged": bool(auc >= AUC_FLAG)}
