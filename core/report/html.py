"""Render a report dict as one self-contained HTML file: inline CSS, plotly.js inline once, no network references."""

from __future__ import annotations

import datetime as _dt
import html

import plotly.io as pio

from core.report.figures import ReportFigure, report_figures
from core.report.format import Table, fmt, interval, number
from core.report.tables import SECTIONS, all_tables

# Keep everything on the reader's machine: the file may load nothing from anywhere (patient data is sensitive).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "img-src data: blob:; font-src data:")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}

_CSS = """
:root { --ink:#1b2430; --muted:#5a6472; --line:#dde3ea; --bg:#f6f8fb; --accent:#0072B2; --warn:#8a5a00;
        --warnbg:#fff4d6; --warnline:#E69F00; }
* { box-sizing: border-box; }
body { margin:0; font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; color:var(--ink); background:#fff;
       font-size:15px; line-height:1.5; }
header.banner { background: linear-gradient(120deg, #0b3d5c, #0072B2); color:#fff; padding:28px 48px 22px; }
header .brand { text-transform:uppercase; letter-spacing:.12em; font-size:12px; opacity:.85; }
header h1 { margin:6px 0 4px; font-size:30px; font-weight:650; }
header .subtitle { margin:0 0 14px; font-size:17px; opacity:.95; }
header dl { display:flex; flex-wrap:wrap; gap:6px 28px; margin:0; font-size:13px; }
header dt { opacity:.75; } header dd { margin:0; font-weight:600; }
header dl div { display:flex; gap:6px; }
main, .notices, nav.toc, footer { max-width:1180px; margin:0 auto; padding-left:48px; padding-right:48px; }
.notices { padding-top:18px; }
.notice { border-left:5px solid var(--warnline); background:var(--warnbg); color:#3d2b00; padding:10px 14px;
          margin:0 0 8px; border-radius:4px; }
.notice strong { color:var(--warn); text-transform:uppercase; letter-spacing:.04em; margin-right:6px; }
nav.toc { padding-top:14px; padding-bottom:4px; font-size:13px; color:var(--muted); display:flex;
          flex-wrap:wrap; gap:4px 16px; }
nav.toc a { color:var(--accent); text-decoration:none; white-space:nowrap; }
section { padding:22px 0 10px; border-bottom:1px solid var(--line); }
section:last-of-type { border-bottom:none; }
h2 { font-size:21px; margin:0 0 12px; }
h2 .num { color:var(--accent); margin-right:8px; }
h3 { font-size:15px; margin:18px 0 6px; color:#24303f; }
p.lead { color:#2b3646; margin:4px 0 12px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(190px, 1fr)); gap:12px; margin:8px 0 14px; }
.card { border:1px solid var(--line); border-radius:8px; padding:12px 14px; background:var(--bg); }
.card .label { font-size:12px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.card .value { font-size:28px; font-weight:650; margin:2px 0; color:#0b3d5c; }
.card .ci { font-size:13px; color:#2b3646; }
.card .method { font-size:12px; color:var(--muted); margin-top:4px; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap:18px 28px; align-items:start; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
table { border-collapse:collapse; width:100%; font-size:13px; margin:4px 0 6px; }
th, td { text-align:left; padding:6px 9px; border-bottom:1px solid var(--line); vertical-align:top; }
thead th { background:#eef3f8; font-weight:600; color:#24303f; border-bottom:2px solid #c9d4e0; }
tbody tr:nth-child(even) td, tbody tr:nth-child(even) th { background:#fafbfd; }
tbody th { font-weight:600; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x:auto; }
ol.footnotes { list-style:none; padding:0; margin:0 0 12px; font-size:12px; color:var(--muted); }
.table-note, .caption { font-size:12.5px; color:var(--muted); margin:2px 0 12px; }
.figure { border:1px solid var(--line); border-radius:8px; padding:6px; margin:8px 0 4px; break-inside:avoid; }
.muted { color:var(--muted); }
ul.tight { margin:4px 0 10px; padding-left:20px; } ul.tight li { margin:3px 0; }
footer { font-size:12px; color:var(--muted); padding-top:16px; padding-bottom:30px; }
@media print { header.banner { -webkit-print-color-adjust:exact; print-color-adjust:exact; }
  nav.toc { display:none; } section { break-inside:auto; } .figure, .card, tr { break-inside:avoid; }
  h2, h3 { break-after:avoid; } body .title-page { display:flex; } header.banner { display:none; } }
@page { size: A4; }
.title-page { display:none; break-after:page; min-height:250mm; flex-direction:column; justify-content:center;
              padding:0 12mm; }
.title-page h1 { font-size:34px; color:#0b3d5c; margin:0 0 10px; } .title-page .subtitle { font-size:19px; }
.title-page dl { margin-top:28px; font-size:14px; } .title-page dt { color:var(--muted); margin-top:8px; }
.title-page dd { margin:0; font-weight:600; }
.title-page h2.caveats-title { font-size:16px; margin:22px 0 6px; border:0; } .title-page .notice { font-size:11.5px; padding:6px 10px; margin:4px 0; }
.notice .why { color:#5a4a1a; }
p.paste { background:var(--bg); border:1px solid var(--line); padding:10px 14px; border-radius:6px; }
svg.flow { max-width:100%; height:auto; }
#table-checklist tbody th { white-space:nowrap; }
"""


def esc(text) -> str:
    """Every string from user data (names, ids, classes, reasons) goes through here before it meets the HTML."""
    return html.escape("" if text is None else str(text), quote=True)


def _table_html(table: Table, heading: bool = True) -> str:
    head = "".join(f"<th scope=\"col\">{esc(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            if i == 0 and table.first_column_is_header:
                cells.append(f"<th scope=\"row\">{esc(cell)}</th>")
            else:
                cls = " class=\"num\"" if i in table.numeric_columns else ""
                cells.append(f"<td{cls}>{esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<h3>{esc(table.title)}</h3>" if heading and table.title else ""
    note = f"<p class=\"table-note\">{esc(table.note)}</p>" if table.note else ""
    notes = "".join(f"<li>{esc(line)}</li>" for line in table.footnote_lines())
    notes = f"<ol class=\"footnotes\">{notes}</ol>" if notes else ""
    thead = f"<thead><tr>{head}</tr></thead>" if table.show_header else ""
    return (f"{title}<div class=\"table-wrap\"><table id=\"table-{esc(table.key)}\">{thead}"
            f"<tbody>{''.join(body)}</tbody></table></div>{note}{notes}")


class _Figures:
    """Figures as HTML divs; plotly.js goes inline with the first one only."""

    def __init__(self, figures: list[ReportFigure]):
        self.by_key = {f.key: f for f in figures}
        self.first = True

    def html(self, key: str) -> str:
        item = self.by_key.get(key)
        if item is None:
            return ""
        div = pio.to_html(item.figure, include_plotlyjs=self.first, full_html=False, config=PLOTLY_CONFIG,
                          default_width="100%", div_id=f"figure-{key}", validate=False)
        self.first = False
        caption = f"<p class=\"caption\">{esc(item.caption)}</p>" if item.caption else ""
        return f"<div class=\"figure\">{div}</div>{caption}"


def _cards(report: dict) -> str:
    cards = []
    for h in report.get("headline") or []:
        value = interval({**h, "low": None, "high": None, "reason": ""}, h["kind"]).split(" (")[0]
        if h.get("low") is not None and h.get("high") is not None:
            level = float(h.get("confidence") or 0.95)
            ci = f"{level:.0%} CI {fmt(h['low'], h['kind'])} to {fmt(h['high'], h['kind'])}"
        else:
            ci = h.get("reason") or "no interval"
        cards.append(f"<div class=\"card\" id=\"headline-{esc(h['key'])}\"><div class=\"label\">{esc(h['label'])}"
                     f"</div><div class=\"value\">{esc(value)}</div><div class=\"ci\">{esc(ci)}</div>"
                     f"<div class=\"method\">{esc(h.get('method') or '')}{' - ' if h.get('method') else ''}"
                     f"{esc(h.get('note') or '')}</div></div>")
    return f"<div class=\"cards\">{''.join(cards)}</div>"


def _run_name(report: dict):
    """The evaluated run's name: the model's, or the imported scores' run (core.infer.imported), else None."""
    return (report.get("model") or {}).get("run_name") or (report.get("scores_source") or {}).get("run_name")


def _summary_sentence(report: dict) -> str:
    evaluation = report.get("evaluation") or {}
    test_set = report.get("test_set") or {}
    n, patients = evaluation.get("n_images") or 0, evaluation.get("n_patients")
    who = f"{n:,} test images" + (f" from {patients:,} patients" if patients else "")
    model = _run_name(report) or "the model"
    return (f"Model \u201c{esc(model)}\u201d evaluated on \u201c{esc(test_set.get('name'))}\u201d ({esc(who)}). "
            "Each number is given with its confidence interval and the method that produced it.")


def _date(report: dict) -> str:
    try:
        created = _dt.datetime.fromisoformat(str(report.get("created")))
    except ValueError:
        return esc(report.get("created"))
    return esc(created.strftime("%d %B %Y, %H:%M UTC"))


def _header(report: dict) -> str:
    test_set = report.get("test_set") or {}
    task = report.get("task") or {}
    product = report.get("product") or {}
    options = report.get("options") or {}
    facts = [("Date", _date(report)), ("Product", esc(f"{product.get('name')} {product.get('version')}")),
             ("Task", esc(task.get("title") or task.get("name"))),
             ("Confidence", esc(f"{float(options.get('confidence') or 0.95):.0%}")),
             ("Threshold", esc(options.get("threshold_label") or number(options.get("threshold"), 2)))]
    meta = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (f"<header class=\"banner\"><div class=\"brand\">{esc(product.get('name'))} \u00b7 evaluation report</div>"
            f"<h1>{esc(report.get('title'))}</h1><p class=\"subtitle\">{esc(_run_name(report) or 'Model')} on "
            f"{esc(test_set.get('name'))}</p><dl>{meta}</dl></header>")


def _title_page(report: dict) -> str:
    """The PDF's first page (hidden on screen, where the banner says the same)."""
    test_set = report.get("test_set") or {}
    product = report.get("product") or {}
    facts = [("Model", _run_name(report) or "model"), ("Test set", test_set.get("name")),
             ("Task", (report.get("task") or {}).get("title")), ("Date", None),
             ("Product", f"{product.get('name')} {product.get('version')}")]
    rows = "".join(f"<dt>{k}</dt><dd>{_date(report) if k == 'Date' else esc(v)}</dd>" for k, v in facts)
    warn = _caveat_items(report, "p")
    warn = f"<h2 class=\"caveats-title\">What is not known</h2>{warn}" if warn else ""
    return (f"<div class=\"title-page\"><div class=\"brand muted\">{esc(product.get('name'))} \u00b7 evaluation "
            f"report</div><h1>{esc(report.get('title'))}</h1><p class=\"subtitle\">{esc(_run_name(report) or 'Model')}"
            f" on {esc(test_set.get('name'))}</p><dl>{rows}</dl>{warn}</div>")


def _caveat_items(report: dict, tag: str) -> str:
    """The report's caveats (core.report.caveats, the one list the slide "What is not known" shows), each with its
    head in bold; a report without them (an older file) shows its notices."""
    caveats = report.get("caveats")
    if caveats is None:
        caveats = []
        for text in report.get("notices") or []:
            head, _, rest = str(text).partition(": ")
            caveats.append({"head": head, "text": rest} if head.isupper() and rest else {"head": "", "text": text})
    items = []
    for c in caveats:
        head = f"<strong>{esc(c.get('head'))}</strong>" if c.get("head") else ""
        why = f" <span class=\"why\">{esc(c.get('explanation'))}</span>" if c.get("explanation") else ""
        items.append(f"<{tag} class=\"notice\" role=\"note\">{head}{esc(c.get('text'))}{why}</{tag}>")
    return "".join(items)


def _notices(report: dict) -> str:
    items = _caveat_items(report, "div")
    return f"<div class=\"notices\">{items}</div>" if items else ""


def _section_bodies(report: dict) -> dict[str, str]:
    tables = all_tables(report)
    figures = _Figures(report_figures(report))
    t = lambda key, heading=True: _table_html(tables[key], heading) if key in tables else ""  # noqa: E731
    options = report.get("options") or {}
    bodies = {
        "summary": f"<p class=\"lead\">{_summary_sentence(report)}</p>{_cards(report)}" + (
            f"<h3>Refer when unsure</h3><div class=\"grid2\"><div>{t('referrals', False)}"
            f"{figures.html('referral_confusion')}</div><div>{figures.html('risk_coverage')}</div></div>"
            if "referrals" in tables else ""),
        "model": t("model_card", False),
        "test-set": f"<div class=\"grid2\"><div>{t('test_set', False)}</div><div>{t('class_counts', False)}</div>"
                    "</div>",
        "discrimination": (f"<div class=\"grid2\"><div>{figures.html('roc_classes')}</div>"
                           f"<div>{figures.html('roc_view')}</div></div>" + t("per_class") + t("per_label")
                           + t("operating_points") + t("binary_views") + t("summary_statistics")),
        "confusion": f"<div class=\"grid2\"><div>{figures.html('confusion')}</div><div>{t('confusion', False)}"
                     "</div></div>",
        "calibration": figures.html("calibration"),
        "tiers": f"<div class=\"grid2\"><div>{figures.html('tiers')}</div><div>{t('tiers', False)}</div></div>"
        if "tiers" in tables else "",
        "penalties": "",
        "readers": "",
        "methods": _methods(report),
        "decision": t("decision", False),
        "checklist": _flow_svg(report) + t("checklist", False),
    }
    from core.report.subgroups import subgroup_report_tables

    bodies["subgroups"] = "".join(_table_html(table) + figures.html(table.key)
                                  for table in subgroup_report_tables(report))
    if "penalty_matrix" in tables:
        bodies["penalties"] = (f"<div class=\"grid2\"><div>{t('penalty_matrix')}{t('penalty_comparison')}</div>"
                               f"<div>{figures.html('penalty_change')}</div></div>")
    readers = report.get("readers") or {}
    if readers.get("included"):
        profiles = "".join(f"<li><strong>{esc(r)}</strong>: {esc(text)}</li>"
                           for r, text in (readers.get("simulated_profiles") or {}).items())
        bodies["readers"] = ((f"<p class=\"lead\">Simulated readers in this comparison:</p><ul class=\"tight\">"
                              f"{profiles}</ul>" if profiles else "") + t("readers")
                             + figures.html("readers_roc") + figures.html("readers_lr")
                             + figures.html("readers_weighted") + t("paired"))
    elif options.get("include_readers") and readers.get("reason"):
        bodies["readers"] = f"<p class=\"muted\">No reader comparison: {esc(readers['reason'])}.</p>"
    mrmc = report.get("mrmc") or {}
    if mrmc.get("included"):
        bodies["readers"] += ("<h3>Aided-reading study (MRMC)</h3><ul class=\"tight\">"
                              + "".join(f"<li>{esc(s)}</li>" for s in mrmc.get("sentences") or [])
                              + f"</ul><p class=\"table-note\">{esc(mrmc.get('method'))}; study "
                                f"\u201c{esc(mrmc.get('study'))}\u201d, {len(mrmc.get('readers') or [])} readers, "
                                f"{esc(mrmc.get('cases'))} cases.</p>")
    return bodies


def _flow_svg(report: dict) -> str:
    """The STARD participant flow, drawn as inline SVG (vector in print) from the report's test-set counts."""
    from core.report.checklist import flow_counts

    f = flow_counts(report)
    classes = list(f["class_counts"].items())
    boxes = [(f"Images registered in the test set: {f['registered']:,}", 20),
             (f"Images analysed: {f['analysed']:,}" + (f" ({f['patients']:,} patients)" if f["patients"] else ""),
              120)]
    width = max(720, 170 * max(len(classes), 1) + 20)
    parts = [f"<svg class=\"flow\" viewBox=\"0 0 {width} 300\" "
             f"width=\"{width}\" height=\"300\" role=\"img\" aria-label=\"STARD flow diagram\">",
             "<style>rect{fill:#eef3f8;stroke:#0b3d5c}text{font:13px sans-serif;fill:#1b2430}"
             "line{stroke:#0b3d5c;stroke-width:1.5}</style>"]
    for text, y in boxes:
        parts.append(f"<rect x=\"20\" y=\"{y}\" width=\"420\" height=\"44\" rx=\"4\"/>"
                     f"<text x=\"32\" y=\"{y + 27}\">{esc(text)}</text>")
    parts.append("<line x1=\"230\" y1=\"64\" x2=\"230\" y2=\"120\"/><line x1=\"230\" y1=\"92\" x2=\"470\" y2=\"92\"/>"
                 "<rect x=\"470\" y=\"72\" width=\"240\" height=\"40\" rx=\"4\"/>"
                 f"<text x=\"480\" y=\"97\">Excluded (unreadable): {f['excluded']:,}</text>")
    for i, (name, count) in enumerate(classes):
        x = 20 + 170 * i
        parts.append(f"<line x1=\"230\" y1=\"164\" x2=\"{x + 75}\" y2=\"220\"/>"
                     f"<rect x=\"{x}\" y=\"220\" width=\"150\" height=\"44\" rx=\"4\"/>"
                     f"<text x=\"{x + 10}\" y=\"247\">{esc(name)}: {int(count):,}</text>")
    parts.append("</svg>")
    return ("<h3>Participant flow (STARD 19, CLAIM 33)</h3><div class=\"figure\">" + "".join(parts) + "</div>"
            "<p class=\"caption\">Reference-standard class of the analysed images. Exclusions before registration "
            "(eligibility, STARD 6 and 19): to be completed by the authors.</p>")


def _methods(report: dict) -> str:
    methods = report.get("methods") or {}
    paste = (f"<h3>Methods paragraph (ready to paste)</h3><p class=\"paste\" id=\"methods-paste\">"
             f"{esc(methods['paste'])}</p>" if methods.get("paste") else "")
    refs = "".join(f"<li>{esc(m)}</li>" for m in methods.get("references") or [])
    refs = f"<h3>References</h3><ol class=\"tight\">{refs}</ol>" if refs else ""
    return paste + _methods_body(report) + refs


def _methods_body(report: dict) -> str:
    methods = report.get("methods") or {}
    paragraphs = "".join(f"<p>{esc(p)}</p>" for p in methods.get("paragraphs") or [])
    used = "".join(f"<li>{esc(m)}</li>" for m in methods.get("interval_methods") or [])
    limits = "".join(f"<li>{esc(m)}</li>" for m in methods.get("limitations") or [])
    return (paragraphs + (f"<h3>Interval methods named in this report</h3><ul class=\"tight\">{used}</ul>"
                          if used else "")
            + (f"<h3>Limitations</h3><ul class=\"tight\">{limits}</ul>" if limits else ""))


def _footer(report: dict) -> str:
    product = report.get("product") or {}
    options = report.get("options") or {}
    boot = int(options.get("bootstrap") or 0)
    return (f"<footer>Generated by {esc(product.get('name'))} {esc(product.get('version'))} on {_date(report)}. "
            f"Threshold {esc(options.get('threshold_label') or number(options.get('threshold'), 2))}; bootstrap {boot:,} resamples, seed "
            f"{esc(options.get('seed'))}; penalty matrix \u201c{esc(options.get('penalty_name') or 'n/a')}\u201d. "
            "This file is self-contained and loads nothing from the network. Report format "
            f"{esc(report.get('format_version'))}.</footer>")


def render_html(report: dict) -> str:
    """The whole report as one HTML document (about 5 MB: plotly.js is embedded so that it works offline)."""
    bodies = _section_bodies(report)
    shown = [(anchor, title) for anchor, title in SECTIONS if bodies.get(anchor)]
    toc = "".join(f"<a href=\"#{anchor}\">{i}. {esc(title)}</a>" for i, (anchor, title) in enumerate(shown, 1))
    sections = "".join(f"<section id=\"{anchor}\"><h2><span class=\"num\">{i}</span>{esc(title)}</h2>"
                       f"{bodies[anchor]}</section>" for i, (anchor, title) in enumerate(shown, 1))
    model = _run_name(report) or "model"
    test_set = (report.get("test_set") or {}).get("name") or "test set"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(report.get('title'))}: {esc(model)} on {esc(test_set)}</title>"
            f"<style>{_CSS}</style></head><body>{_title_page(report)}{_header(report)}{_notices(report)}"
            f"<nav class=\"toc\">{toc}</nav><main>{sections}</main>{_footer(report)}</body></html>\n")
