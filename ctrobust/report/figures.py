"""The report's figures as PNG bytes: CT panel grids (PIL, see :mod:`.canvas`) and curves
(matplotlib's Agg canvas, no pyplot state).

Grey-scale CT images are shown through a :class:`~ctrobust.report.windows.Window` with a
grey bar giving the HU range; signed maps use a diverging map centred on zero with one
symmetric scale per group of columns, so panels in a group compare directly.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .canvas import Cell, ColourBar, Scale, grid, nice_limit, to_png
from .windows import Window


def window_grid(
    images: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    window: Window,
) -> bytes:
    """Rows x columns of HU images in one display window (None: a 'not computed' box)."""
    scale = Scale(window=window)
    cells = [[Cell(v, scale) if v is not None else None for v in row] for row in images]
    bar = ColourBar(scale, f"{window.label} (HU)", range(len(col_labels)))
    return grid(cells, row_labels, col_labels, [bar])


def diverging_limits(
    images: Sequence[Sequence[np.ndarray | None]], groups: Sequence[int]
) -> dict[int, float]:
    """The symmetric colour limit of each group of columns, as :func:`diverging_grid` draws it."""
    n_rows = len(images)
    return {
        g: nice_limit(
            [images[i][j] for i in range(n_rows) for j, gj in enumerate(groups) if gj == g]
        )
        for g in dict.fromkeys(groups)
    }


def diverging_grid(
    images: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    groups: Sequence[int],
    units: Sequence[str],
    integer_zoom: bool = False,
) -> bytes:
    """Signed maps; columns with the same group id share a symmetric scale and colour bar.

    ``units`` labels the colour bar of each group, in order of the groups' first column; a
    ``{limit}`` in a label is replaced by that group's colour limit; ``integer_zoom`` avoids
    resampling (for sinograms).
    """
    n_rows = len(images)
    cells: list[list[Cell | None]] = [[None] * len(col_labels) for _ in range(n_rows)]
    bars = []
    for g_index, (g, limit) in enumerate(diverging_limits(images, groups).items()):
        cols = [j for j, gj in enumerate(groups) if gj == g]
        scale = Scale(limit=limit)
        for i in range(n_rows):
            for j in cols:
                if images[i][j] is not None:
                    cells[i][j] = Cell(images[i][j], scale)
        bars.append(ColourBar(scale, units[g_index].replace("{limit}", f"{scale.limit:g}"), cols))
    return grid(cells, row_labels, col_labels, bars, missing="–", integer_zoom=integer_zoom)


@dataclass(frozen=True)
class Row:
    """A row of a mixed grid: grey images in a window, or signed maps with a colour bar."""

    label: str
    images: Sequence[np.ndarray | None]
    window: Window | None = None
    units: str = ""


def mixed_grid(rows: Sequence[Row], col_labels: Sequence[str]) -> bytes:
    """Rows of windowed images and rows of signed maps, one colour bar per distinct scale."""
    cells, bars, seen = [], [], set()
    every = range(len(col_labels))
    for row in rows:
        scale = Scale(window=row.window) if row.window else Scale(limit=nice_limit(row.images))
        cells.append([Cell(v, scale) if v is not None else None for v in row.images])
        if scale not in seen:
            seen.add(scale)
            label = f"{row.window.label} (HU)" if row.window else row.units
            bars.append(ColourBar(scale, label, every))
    return grid(cells, [r.label for r in rows], col_labels, bars, missing="")


@dataclass(frozen=True)
class CurvePanel:
    """One line plot: x values and (label, y values, colour, line style) series."""

    x: Sequence[float]
    series: Sequence[tuple[str, Sequence[float], str, str]]
    xlabel: str
    ylabel: str
    title: str = ""
    log_x: bool = False
    log_y: bool = False
    marker_x: float | None = None
    marker_label: str = ""


def curves(panels: Sequence[CurvePanel], height_in: float = 3.4) -> bytes:
    """Line plots side by side, markers on every measured point."""
    fig = Figure(figsize=(4.6 * len(panels) + 0.4, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, panel in zip(axes, panels, strict=True):
        for label, values, colour, style in panel.series:
            ax.plot(
                panel.x,
                values,
                linestyle=style,
                color=colour,
                marker="o",
                markersize=4,
                label=label,
            )
        if panel.marker_x is not None:
            ax.axvline(
                panel.marker_x,
                color="#888888",
                linestyle=":",
                linewidth=1,
                label=panel.marker_label or None,
            )
        if panel.log_x:
            ax.set_xscale("log")
            ax.set_xticks(list(panel.x), [f"{v:g}" for v in panel.x])
            ax.minorticks_off()
        if panel.log_y:
            ax.set_yscale("log")
        ax.set_xlabel(panel.xlabel, fontsize=9)
        ax.set_ylabel(panel.ylabel, fontsize=9)
        ax.set_title(panel.title, fontsize=9.5)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7.5, frameon=False, handlelength=3.2)
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=110, facecolor="white")

    return to_png(Image.open(raw))


def colours(n: int) -> list[str]:
    """Distinct, colour-blind friendly line colours (Okabe-Ito), cycling."""
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
    return [palette[i % len(palette)] for i in range(n)]
