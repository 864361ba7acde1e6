"""Plotly figure builders: they take computed metric results and return figures; they compute no statistic."""

from core.plots.calibration import ReliabilitySeries, reliability_figure
from core.plots.compare import compare_roc_figure, learning_curve_figure, metric_bars_figure
from core.plots.confusion import CELL_TRACE_NAME, COLOUR_MODES, confusion_figure, count_change_figure
from core.plots.imbalance import class_distribution_figure, predictive_values_figure
from core.plots.roc import (MAX_DISPLAY_POINTS, PointMarker, PrSeries, RocSeries, auc_label, display_curve,
                            display_indices, pr_figure, roc_figure, with_markers)
from core.plots.style import (OKABE_ITO, apply_layout, base_layout, class_color, class_colors, safe_text,
                              series_color, series_colors, series_dash)

__all__ = [
    "OKABE_ITO", "apply_layout", "base_layout", "safe_text", "class_color", "class_colors", "series_color",
    "series_colors", "series_dash",
    "MAX_DISPLAY_POINTS", "display_curve", "display_indices", "auc_label", "RocSeries", "PrSeries", "PointMarker",
    "roc_figure",
    "pr_figure", "with_markers", "COLOUR_MODES", "CELL_TRACE_NAME", "confusion_figure", "count_change_figure",
    "ReliabilitySeries", "reliability_figure", "class_distribution_figure", "predictive_values_figure",
    "compare_roc_figure", "learning_curve_figure", "metric_bars_figure",
]
