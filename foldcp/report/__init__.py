"""Report: one self-contained HTML page (inline SVG figures) of a screen's result tables."""

from foldcp.report.html import write_report

__all__ = ["write_report"]
