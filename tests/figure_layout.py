"""Draw a Plotly figure in the real browser (system Chromium, plotly.js from the plotly package) and measure the
boxes of its text: tick labels, axis titles, the legend, heatmap cell text. Layout tests use it to prove that text
does not overlap at the width a page gives the figure, instead of trusting a screenshot by eye."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.offline

from tests._server import CHROMIUM_ARGS, require_chromium

_MEASURE = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {text: el.textContent, x0: r.left, x1: r.right, y0: r.top, y1: r.bottom}; };
  const all = (sel) => Array.from(document.querySelectorAll(sel)).map(box);
  const plot = document.querySelector('.nsewdrag') || document.querySelector('.bglayer rect');
  return {xticks: all('.xtick text'), yticks: all('.ytick text'), xtitle: all('.g-xtitle text'),
          ytitle: all('.g-ytitle text'), legend: all('.legend .bg'), legend_items: all('.legend .traces'),
          cells: all('.hm text, .heatmaplayer text, .textpoint text'), plot: plot ? [box(plot)] : []};
}"""




def rendered_boxes(fig: go.Figure, width: int, height: int | None = None, screenshot: str | None = None) -> dict:
    """Boxes (x0, x1, y0, y1 in CSS pixels) of the figure's text drawn `width` pixels wide."""
    from playwright import sync_api  # a pinned requirement: imported, never skipped
    fig = go.Figure(fig)
    fig.update_layout(width=width, height=height or fig.layout.height or 450)
    html = ("<html><head><meta charset='utf-8'><script>" + plotly.offline.get_plotlyjs() + "</script></head>"
            "<body style='margin:0'><div id='f'></div><script>const f = " + fig.to_json() + ";"
            "Plotly.newPlot('f', f.data, f.layout, {staticPlot: true}).then(() => { window.done = true; });"
            "</script></body></html>")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=require_chromium("the layout tests"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width + 20, "height": (height or 450) + 20})
            page.set_content(html)
            page.wait_for_function("window.done === true", timeout=30_000)
            if screenshot:
                page.screenshot(path=screenshot)
            return page.evaluate(_MEASURE)
        finally:
            browser.close()


def overlaps(a: dict, b: dict, pad: float = 0.0) -> bool:
    """Whether two boxes overlap (touching within `pad` pixels counts)."""
    return a["x0"] < b["x1"] + pad and b["x0"] < a["x1"] + pad and a["y0"] < b["y1"] + pad and b["y0"] < a["y1"] + pad


def overlapping_pairs(boxes: list[dict], pad: float = 2.0) -> list[tuple[str, str]]:
    """The pairs of boxes in `boxes` that overlap (tick labels running together)."""
    return [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1:] if overlaps(a, b, pad)]
