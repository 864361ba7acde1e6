"""Save a report into the workspace's reports folder: the HTML file and the JSON of all its numbers."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from core.report.html import render_html
from core.store import Workspace


def report_name(report: dict) -> str:
    """A file-system-safe name: report-<run>-<test set>-<date>."""
    model = (report.get("model") or {}).get("run_id") or "model"
    test_set = (report.get("test_set") or {}).get("id") or "test-set"
    created = re.sub(r"[^0-9]", "", str(report.get("created") or ""))[:14] or time.strftime("%Y%m%d%H%M%S")
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", f"report-{model}-{test_set}-{created}").strip("-").lower()
    return slug[:180]


def report_json(report: dict) -> str:
    """The report's numbers as strict JSON (no NaN: missing numbers are null, infinities "inf")."""
    return json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False)


def write_report(ws: Workspace, report: dict, name: str | None = None, html: str | None = None) -> Path:
    """Write <reports_dir>/<name>.html and <name>.json; returns the HTML file's path."""
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-.") if name else report_name(report)
    name = name or report_name(report)
    ws.reports_dir.mkdir(parents=True, exist_ok=True)
    path = ws.reports_dir / f"{name}.html"
    path.write_text(html if html is not None else render_html(report), encoding="utf-8")
    path.with_suffix(".json").write_text(report_json(report), encoding="utf-8")
    return path
