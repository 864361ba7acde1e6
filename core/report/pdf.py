"""The report as PDF: Chromium prints the same self-contained HTML (plotly draws SVG, so figures stay vector)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.errors import InputError
from core.report.html import render_html

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Page numbers in Chromium's own footer (its header/footer templates are plain HTML with these class names).
FOOTER = ("<div style=\"font-size:8px;width:100%;text-align:center;color:#5a6472;\">"
          "<span class=\"title\"></span> \u00b7 page <span class=\"pageNumber\"></span> of "
          "<span class=\"totalPages\"></span></div>")


def chromium_path() -> str:
    """The Chromium to print with ($CHROMIUM_PATH, else the system one); InputError saying how to get one."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise InputError("PDF export needs Chromium and none was found (looked at $CHROMIUM_PATH, "
                     f"{', '.join(CHROMIUM_CANDIDATES)}): install Debian's 'chromium' package, or export the HTML "
                     "report instead (--out report.html)")


def render_pdf(report: dict, html: str | None = None, timeout_s: float = 120.0) -> bytes:
    """Print the report's HTML (render_html, the same numbers and figures) to an A4 PDF with a title page and page
    numbers. Nothing is fetched: the page is set from memory and every request is refused."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise InputError("PDF export needs the 'playwright' Python package (see requirements.txt)") from None
    executable = chromium_path()
    html = render_html(report) if html is None else html
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.route("**/*", lambda route: route.abort())  # offline by construction
                page.set_content(html, wait_until="load", timeout=timeout_s * 1000)
                page.emulate_media(media="print")
                # plotly draws each figure asynchronously: wait until every figure div holds its SVG.
                page.wait_for_function("() => [...document.querySelectorAll('.figure > div > .plotly-graph-div')]"
                                       ".every(d => d.querySelector('svg.main-svg'))", timeout=timeout_s * 1000)
                return page.pdf(format="A4", print_background=True, display_header_footer=True,
                                header_template="<div></div>", footer_template=FOOTER,
                                margin={"top": "14mm", "bottom": "16mm", "left": "12mm", "right": "12mm"})
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise InputError(f"Chromium ({executable}) could not print the report: {str(exc).splitlines()[0]}") from None


def write_report_file(report: dict, out: Path) -> Path:
    """Write the report as .pdf, .html or .json by the file's suffix (InputError for another one or a write error)."""
    from core.report.export import report_json

    suffix = out.suffix.lower()
    if suffix == ".pdf":
        data = render_pdf(report)
    elif suffix in (".html", ".htm"):
        data = render_html(report).encode("utf-8")
    elif suffix == ".json":
        data = report_json(report).encode("utf-8")
    else:
        raise InputError(f"{out}: the report can be written as .pdf, .html or .json, not {suffix or 'no suffix'!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the report ({exc.strerror})") from None
    return out
