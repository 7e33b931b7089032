"""Assemble the report of a run folder into RUN_DIR/report/index.html (and optionally a PDF).

The report only reads what the run wrote (metrics.json, run.json, cache files); it never
recomputes a reconstruction or an attack, so it rebuilds in seconds and always shows the
numbers the run measured.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dicom_io.atomic import write_text_atomic

from .antun import instability_section
from .browser import BrowserUnavailableError, print_pdf
from .captions import psnr_note
from .html import Markup, Section, bullets, esc, page, paragraph
from .provenance import Pseudonyms, export_section, header_section
from .rundata import RunData
from .slices import DEFAULT_MAX_SLICES, shown_slices, slice_anchor, slice_section
from .summary import summary_section
from .verdicts import verdict_section, worst_slice_indices
from .windows import WINDOWS

log = logging.getLogger("ctrobust")


def _reading_guide(data: RunData) -> Section:
    views = data.metrics.data.views if data.metrics.data else "the measured number of"
    items = [
        f"FBP: filtered back-projection of the {views}-view sinogram, the classical method.",
        "Network: FBPConvNet, a U-Net that cleans up the FBP image; each training scheme is "
        "one network.",
        "Ground truth: FBP of a noise-free sinogram with many more views.",
        "ε: the size of the change to the measured sinogram (ℓ2 norm), as a percentage of "
        "the norm of the sinogram itself; δ is that change.",
        "Worst case: the δ of size ε that an optimiser found to damage the image most. "
        "Random: a random δ of the same size, for comparison.",
        "ρ̂(ε): average reconstruction error ‖f(y + δ) − x‖₂ under the worst case; lower is "
        "more robust.",
        "Windows: " + "; ".join(w.label + " HU" for w in WINDOWS) + ".",
        psnr_note(data) or "PSNR/SSIM: see the clean table.",
    ]
    return Section("guide", "How to read this report", Markup(bullets(items)))


def render(data: RunData, max_slices: int = DEFAULT_MAX_SLICES) -> str:
    """The report of loaded run data as one HTML string."""
    names = Pseudonyms(data)
    shown = shown_slices(data, max_slices)
    if shown:  # the first attacked slices, and every verdict's worst slice
        shown = {t: slice_anchor(t) for t in sorted({*shown, *worst_slice_indices(data)})}
    labels = data.metrics.attack.test_slices if data.metrics.attack else []

    def slice_name(label: object) -> str:
        if isinstance(label, int) and label < len(labels):
            label = labels[label]
        return names.slice_label(str(label))

    candidates = [
        header_section(data, names),
        verdict_section(data, names, shown),
        summary_section(data, names, shown),
        slice_section(data, names, shown),
        instability_section(data, slice_name),
        export_section(data, names),
        _reading_guide(data),
    ]
    sections = [s for s in candidates if s is not None]
    intro = Markup(
        f"<h1>CT reconstruction robustness report: {esc(data.title)}</h1>"
        + paragraph(
            "How far can a small, deliberate change to the measured CT data alter what each "
            "reconstruction method shows? Simulated research reconstructions only.",
            "note",
        )
    )
    return page(f"ctrobust report: {data.title}", intro, sections)


def build_report(run_dir: Path, pdf: bool = False, max_slices: int = DEFAULT_MAX_SLICES) -> Path:
    """Write RUN_DIR/report/index.html from the run folder; returns its path.

    Args:
        run_dir: a run folder (docs/run_folder.md); only its files are read.
        pdf: also print RUN_DIR/report/index.pdf with headless Chromium (skipped with a
            logged warning when Chromium is not installed).
        max_slices: how many attacked test slices get image panels.
    """
    run_dir = Path(run_dir)
    data = RunData.load(run_dir)
    out = run_dir / "report" / "index.html"
    write_text_atomic(out, render(data, max_slices))
    if pdf:
        try:
            print_pdf(out)
        except BrowserUnavailableError as error:
            log.warning("report: no PDF: %s", error)
    return out
