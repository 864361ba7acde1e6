"""Shared look of every figure: the Okabe-Ito palette, one class -> colour mapping, layout defaults."""

from __future__ import annotations

from typing import Iterable, Sequence

import plotly.graph_objects as go

# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
BLUE, ORANGE, GREEN, PINK, SKY, VERMILLION, YELLOW, BLACK = OKABE_ITO
# Yellow is hard to see as a thin line on white, so lines use it last; black is kept for markers and references.
_LINE_ORDER = (BLUE, ORANGE, GREEN, PINK, SKY, VERMILLION, YELLOW)
# When there are more series than colours, the dash pattern tells them apart.
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
REFERENCE_GREY = "#8C8C8C"
OPERATING_POINT_COLOR = BLACK
# Sequential scale from white to the palette's blue (counts, shares); diverging orange-white-blue for differences.
SEQUENTIAL_SCALE = [[0.0, "#FFFFFF"], [0.5, "#8CC4E8"], [1.0, BLUE]]
DIVERGING_SCALE = [[0.0, VERMILLION], [0.5, "#FFFFFF"], [1.0, BLUE]]
FONT_FAMILY = "Inter, Helvetica, Arial, sans-serif"


def safe_text(text) -> str:
    """Plotly reads a few HTML tags in labels; escape user-supplied names (class folders, run names) so they
    show as typed and never as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def log_ticks(low_exp: float, high_exp: float, max_ticks: int = 7) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis spanning 10**low_exp..10**high_exp: 1-2-5 steps thinned to at most
    `max_ticks`, each labelled in full ("0.2", "1", "50"). Plotly's own minor labels on a short log range read
    "2 3 ... 9 1 2 3" with no decade shown."""
    import math

    values = [m * 10.0 ** e for e in range(math.floor(low_exp) - 1, math.ceil(high_exp) + 1) for m in (1, 2, 5)]
    inside = [v for v in values if low_exp <= math.log10(v) <= high_exp]
    for keep in ((1, 2, 5), (1, 5), (1,)):
        chosen = [v for v in inside if round(v / 10 ** math.floor(math.log10(v) + 1e-9)) in keep]
        if len(chosen) <= max_ticks:
            break
    while len(chosen) > max_ticks:
        chosen = chosen[::2]
    return chosen, [f"{v:.4g}" for v in chosen]


def series_color(index: int) -> str:
    """The colour of the index-th series (classes, runs, readers)."""
    return _LINE_ORDER[index % len(_LINE_ORDER)]


def series_dash(index: int) -> str:
    """Dash pattern for the index-th series: solid for the first len(palette) series, then patterned."""
    return _DASHES[(index // len(_LINE_ORDER)) % len(_DASHES)]


def class_colors(classes: Iterable[str]) -> dict[str, str]:
    """Class name -> colour, from the class's position in the task's canonical order.

    Every page passes `task.classes`, so CNV is the same blue on the ROC, the confusion thumbnails, the class
    distribution and the calibration plots of one task.
    """
    return {str(name): series_color(i) for i, name in enumerate(classes)}


def class_color(classes: Sequence[str], name: str) -> str:
    """The colour of one class of a task (see class_colors)."""
    names = [str(c) for c in classes]
    return series_color(names.index(str(name))) if str(name) in names else BLACK


def series_colors(names: Iterable[str]) -> dict[str, str]:
    """Name -> colour for an ordered list of other series (runs on the compare page, readers)."""
    return {str(name): series_color(i) for i, name in enumerate(names)}


# A light copy of plotly_white with our palette: assigning the full built-in template costs ~40 ms per figure,
# which adds up on a page that redraws ten figures whenever a threshold moves.
_GRID = "#EBF0F8"
_AXIS = {"automargin": True, "gridcolor": _GRID, "zerolinecolor": _GRID, "zerolinewidth": 2,
         "title": {"standoff": 12}}
LAYOUT_TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "colorway": list(_LINE_ORDER),
    "xaxis": _AXIS, "yaxis": _AXIS, "hovermode": "closest",
})


def base_layout(*, title: str | None = None, x_title: str | None = None, y_title: str | None = None,
                height: int = 440, legend_below: bool = False, xaxis: dict | None = None,
                yaxis: dict | None = None, **extra) -> dict:
    """Layout of every figure: white background, readable fonts, titled axes, legend clear of the data.

    Builders pass the whole layout to the go.Figure constructor once: one validation pass is several times
    faster than update_layout calls, and a threshold move redraws several figures.
    """
    axis_style = {"showline": True, "linecolor": "#444", "ticks": "outside"}
    layout = {
        "template": LAYOUT_TEMPLATE,
        "font": {"family": FONT_FAMILY, "size": 13, "color": "#1B2430"},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 50 if title else 20, "b": 60},
        "hoverlabel": {"font": {"size": 12}},
        "xaxis": {**({"title": {"text": safe_text(x_title)}, **axis_style} if x_title is not None else {}),
                  **(xaxis or {})},
        "yaxis": {**({"title": {"text": safe_text(y_title)}, **axis_style} if y_title is not None else {}),
                  **(yaxis or {})},
    }
    if title:
        # Titles often carry a class, view or run name: escaped like every other user-supplied name.
        layout["title"] = {"text": safe_text(title), "x": 0.0, "xanchor": "left"}
    if legend_below:
        # Anchored to the bottom of the whole figure, not to the plot area: plotly then reserves the margin for it
        # below the x-axis title, so a legend that wraps onto more rows never covers the title or tick labels.
        layout["legend"] = {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0}
    layout.update(extra)
    return layout


def apply_layout(fig: go.Figure, *, title: str | None = None, x_title: str | None = None,
                 y_title: str | None = None, height: int = 440, legend_below: bool = False) -> go.Figure:
    """The same look for a figure built elsewhere (other pages' figures)."""
    fig.update_layout(base_layout(title=title, x_title=x_title, y_title=y_title, height=height,
                                  legend_below=legend_below))
    return fig
