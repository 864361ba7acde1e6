"""Exportable report for stakeholders: collect the numbers (build_report), draw one offline HTML file (render_html)."""

from core.report.build import (build_report, headline, read_run_predictions, readers_section,
                               report_from_predictions, resolve_penalty)
from core.report.evaluate import evaluate_predictions
from core.report.export import report_json, report_name, write_report
from core.report.figures import ReportFigure, report_figures
from core.report.html import render_html
from core.report.methods import interval_methods, limitations, methods_section
from core.report.format import Table
from core.report.tables import SECTIONS, all_tables, section_tables

__all__ = [
    "build_report", "evaluate_predictions", "report_from_predictions", "render_html", "write_report", "report_json", "report_name",
    "headline", "readers_section", "resolve_penalty", "read_run_predictions", "methods_section", "limitations",
    "interval_methods", "all_tables", "section_tables", "SECTIONS", "Table", "report_figures", "ReportFigure",
]
