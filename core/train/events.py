"""A run's events.jsonl: raw step/epoch/status records appended as training goes, read back by the dashboard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

EVENTS_FILE = "events.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every line stays valid JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


class EventWriter:
    """Appends one JSON object per line and flushes each, so a reader sees progress live.

    `listener` (optional) receives every record too (the CLI's progress bar)."""

    def __init__(self, run_dir: str | Path | None, listener: Callable[[dict], None] | None = None,
                 enabled: bool = True):
        self.path = Path(run_dir) / EVENTS_FILE if run_dir is not None else None
        self.listener = listener
        self.enabled = enabled
        self._fh = None

    def write(self, type: str, **fields: Any) -> dict:
        record = _clean({"type": type, "time": time.time(), **fields})
        if self.enabled and self.path is not None:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()
        if self.listener is not None and self.enabled:
            self.listener(record)
        return record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_event(run_dir: str | Path, type: str, **fields: Any) -> dict:
    """One record appended outside a training loop (queued, cancelled, failed)."""
    with EventWriter(run_dir) as events:
        return events.write(type, **fields)


def read_events(run_dir: str | Path, type: str | None = None) -> list[dict]:
    """All records of a run (optionally of one type), skipping a last line still being written."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / EVENTS_FILE
    if not path.exists():
        return []
    records = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a partially written line (the writer is mid-flush) or a damaged one
            if isinstance(record, dict) and (type is None or record.get("type") == type):
                records.append(record)
    return records
