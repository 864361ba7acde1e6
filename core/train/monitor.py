"""What a live view of a run shows, read from its events: phase, progress, ETA, images/s and the curves table."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from core.train.progress import measured_rate
from core.train.smoothing import DEFAULT_SMOOTHING, ema_smooth

CURVE_METRICS = ("loss", "accuracy")
CURVE_COLUMNS = ["split", "metric", "step", "epoch", "value", "smoothed"]
CV_COLUMNS = ["C", "log_loss", "folds_done", "folds", "chosen"]


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands. `fraction` in [0, 1] of the current phase; None when unknown."""

    phase: str                  # "waiting", "extracting features", "fitting the head", "training", "finished"
    fraction: float | None
    done: int | None
    total: int | None
    eta_s: float | None
    images_per_s: float | None
    epoch: int | None
    message: str | None         # the latest status message (e.g. "waiting for a free device slot")
    device: str | None
    latest_val: dict | None     # the last validation epoch record (scores by name)


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _extraction_rate(extracts: list[dict]) -> float | None:
    """Images per second of the backbone's feature extraction (the final extract record's computed count and
    seconds); None when every feature came from the cache or no extraction happened."""
    final = next((e for e in reversed(extracts) if e.get("computed") is not None), None)
    computed, seconds = (_number(final.get("computed")), _number(final.get("seconds"))) if final else (None, None)
    return computed / seconds if computed and seconds else None


def run_progress(events: list[dict], status: str | None = None) -> RunProgress:
    """Summarise a run's events for a progress bar. `status` is the registry status, when known."""
    steps = [e for e in events if e.get("type") == "step"]
    extracts = [e for e in events if e.get("type") == "extract"]
    statuses = [e for e in events if e.get("type") == "status"]
    vals = [e for e in events if e.get("type") == "epoch" and e.get("split") == "val"]
    trains = [e for e in events if e.get("type") == "epoch" and e.get("split") == "train"]
    said = next((e for e in reversed(statuses) if e.get("message") or e.get("error")), None)
    moved = max((float(e.get("time") or 0) for e in events if e.get("type") in ("step", "extract", "cv_fold")),
                default=None)
    # A stage message ("reading the first batch") is news until progress records follow it; then it is stale.
    message = (said.get("message") or said.get("error")) if said and (
        said.get("error") or moved is None or float(said.get("time") or 0) >= moved) else None
    device = next((e.get("device") for e in reversed(statuses) if e.get("device")), None)
    latest_val = {k: v for k, v in vals[-1].items() if k not in ("type", "time")} if vals else None
    epoch = max([int(e.get("epoch") or 0) for e in steps + trains], default=0) or None
    images_per_s = _number(steps[-1].get("images_per_s")) if steps else None
    common = dict(message=message, device=device, latest_val=latest_val, epoch=epoch, images_per_s=images_per_s)

    if status in ("succeeded", "failed", "cancelled"):
        backbone_rate = _extraction_rate(extracts)
        if backbone_rate is not None:
            # Features mode: the backbone's pass is what a deployment pays per image, not the head's epochs.
            common["images_per_s"] = backbone_rate
        done = int(steps[-1].get("step") or 0) if steps else None
        total = int(steps[-1].get("total_steps") or 0) if steps else None
        return RunProgress("finished", 1.0 if status == "succeeded" else
                           (done / total if done is not None and total else None), done, total, 0.0, **common)
    last_extract_time = extracts[-1].get("time", 0) if extracts else None
    last_step_time = steps[-1].get("time", 0) if steps else None
    if extracts and (last_step_time is None or last_extract_time > last_step_time):
        done, total = int(extracts[-1].get("done") or 0), int(extracts[-1].get("total") or 0)
        folds = [e for e in events if e.get("type") == "cv_fold" and e.get("time", 0) > last_extract_time]
        if total and done >= total and (folds or any(e.get("time", 0) > last_extract_time for e in statuses)):
            # Features are in; the logistic head is being fitted: cross-validation folds, then the final fit.
            if not folds:
                return RunProgress("fitting the head", None, None, None, None, **common)
            fold, n_folds = int(folds[-1].get("fold") or 0), int(folds[-1].get("folds") or 0)
            return RunProgress("fitting the head", fold / (n_folds + 1) if n_folds else None, fold, n_folds,
                               _number(folds[-1].get("eta_s")), **common)
        first = extracts[0]
        rate, eta = measured_rate((float(first.get("time", 0)), int(first.get("done") or 0)),
                                  (float(last_extract_time or 0), done), total)
        if rate is not None:
            common["images_per_s"] = rate
        return RunProgress("extracting features", done / total if total else None, done, total, eta, **common)
    if steps:
        done, total = int(steps[-1].get("step") or 0), int(steps[-1].get("total_steps") or 0)
        return RunProgress("training", min(1.0, done / total) if total else None, done, total,
                           _number(steps[-1].get("eta_s")), **common)
    return RunProgress("waiting", None, None, None, None, **common)


def training_curves(events: list[dict], smoothing: float = DEFAULT_SMOOTHING) -> pd.DataFrame:
    """Long table of loss and accuracy against the optimisation step, for train (per step record) and
    validation (per epoch), each with its TensorBoard-style smoothed value."""
    rows = []
    for e in events:
        kind, split = e.get("type"), e.get("split")
        if not ((kind == "step" and split == "train") or (kind == "epoch" and split == "val")):
            continue
        for metric in CURVE_METRICS:
            value = _number(e.get(metric))
            if value is not None and e.get("step") is not None:
                rows.append({"split": "validation" if split == "val" else "train", "metric": metric,
                             "step": int(e["step"]), "epoch": e.get("epoch"), "value": value})
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS[:-1])
    frame = frame.sort_values(["split", "metric", "step"], kind="stable").reset_index(drop=True)
    frame["smoothed"] = pd.Series(dtype=float)
    for _, index in frame.groupby(["split", "metric"]).groups.items():
        frame.loc[index, "smoothed"] = ema_smooth(frame.loc[index, "value"].to_numpy(), smoothing)
    return frame[CURVE_COLUMNS]


def cv_curve(events: list[dict]) -> pd.DataFrame:
    """The logistic head's cross-validation curve: held-out log loss by regularisation strength C, from the latest
    fold record (pooled over the folds done so far); `chosen` marks the C kept once the fit is done."""
    folds = [e for e in events if e.get("type") == "cv_fold"]
    chosen = {float(e["C"]) for e in events if e.get("type") == "cv" and e.get("chosen") and e.get("C") is not None}
    if not folds:
        # Runs from before fold records: the final per-C records alone.
        rows = [{"C": float(e["C"]), "log_loss": _number(e.get("log_loss")), "folds_done": None, "folds": None}
                for e in events if e.get("type") == "cv" and e.get("C") is not None]
    else:
        last = folds[-1]
        rows = [{"C": float(p["C"]), "log_loss": _number(p.get("log_loss")), "folds_done": int(last["fold"]),
                 "folds": int(last["folds"])} for p in last.get("log_loss") or [] if p.get("C") is not None]
    frame = pd.DataFrame(rows, columns=CV_COLUMNS[:-1]).dropna(subset=["log_loss"])
    frame["chosen"] = frame["C"].isin(chosen)
    return frame.sort_values("C").reset_index(drop=True)[CV_COLUMNS]
