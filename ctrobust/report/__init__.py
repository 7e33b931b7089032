"""Batch robustness report of a run folder: one self-contained HTML page (PDF optional).

``build_report(run_dir)`` reads metrics.json, run.json and the cached tensors of a run and
writes ``run_dir/report/index.html`` with embedded images; ``browser_check(html)`` opens it
in headless Chromium and says whether every image loaded.
"""

from .browser import BrowserUnavailableError, browser_check, browser_unavailable_reason, print_pdf
from .build import build_report, render
from .rundata import RunData

__all__ = [
    "BrowserUnavailableError",
    "RunData",
    "browser_check",
    "browser_unavailable_reason",
    "build_report",
    "print_pdf",
    "render",
]
