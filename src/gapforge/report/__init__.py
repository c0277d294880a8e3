"""The discovery report: figures (:mod:`.plots`) and the self-contained HTML page (:mod:`.html`).

Example:
    >>> from gapforge.report import build_report
    >>> build_report("runs/wide-gap")  # writes runs/wide-gap/report.html  # doctest: +SKIP
"""

from __future__ import annotations

from gapforge.report.html import build_report, render_report

__all__ = ["build_report", "render_report"]
