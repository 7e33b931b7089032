"""Image grids drawn directly with PIL: panels at integer zoom, labels, colour bars.

Grids of CT panels are the bulk of the report; drawing them with numpy and PIL instead of
one matplotlib axes per panel is two orders of magnitude faster and keeps pixels honest
(nearest-neighbour zoom, no smoothing, so a one-pixel artefact stays one pixel wide).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from matplotlib import colormaps, font_manager
from PIL import Image, ImageDraw, ImageFont

from .windows import Window

PANEL_PX = 256
"""Largest side of the longer edge of one panel, in pixels."""
MAX_WIDTH = 1320
"""Widest figure in pixels: the report shows it at 1:1 without shrinking the labels."""
GAP = 6
BACKGROUND = (255, 255, 255)
INK = (34, 34, 34)
MUTED = (120, 120, 120)
EMPTY = (244, 244, 244)
"""Text and empty panels are neutral grey, so grids of grey-scale images stay grey PNGs."""
LEVELS = 224
"""Colours of a diverging map: with text shades it fits one 256-colour PNG palette exactly."""


@cache
def font(size: int = 13, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib), so text looks the same everywhere."""
    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(font_manager.findfont(props), size)


@dataclass(frozen=True)
class Scale:
    """How values become colours: a CT window (grey) or a symmetric diverging map."""

    window: Window | None = None
    limit: float = 1.0
    cmap: str = "RdBu_r"

    @property
    def low(self) -> float:
        return self.window.low if self.window else -self.limit

    @property
    def high(self) -> float:
        return self.window.high if self.window else self.limit

    def rgb(self, values: np.ndarray) -> np.ndarray:
        """(H, W) values -> (H, W, 3) uint8."""
        t = np.clip(
            (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low), 0, 1
        )
        if self.window:
            grey = np.round(t * 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=-1)
        return _lut(self.cmap)[np.round(t * (LEVELS - 1)).astype(np.int64)]

    def ticks(self) -> list[float]:
        if self.window:
            return [self.low, self.window.level, self.high]
        return [-self.limit, -self.limit / 2, 0.0, self.limit / 2, self.limit]


@cache
def _lut(name: str) -> np.ndarray:
    return (colormaps[name](np.linspace(0, 1, LEVELS))[:, :3] * 255).round().astype(np.uint8)


@cache
def _palette(cmap: str) -> Image.Image:
    """A palette image: the diverging map's colours plus shades of the ink and muted text."""
    white = np.array(BACKGROUND, dtype=np.float64)
    shades = [
        np.round(white + (np.array(c) - white) * a)
        for c, k in ((INK, 16), (MUTED, 14))
        for a in np.linspace(0, 1, k)
    ]
    colours = np.concatenate([_lut(cmap), np.array(shades), np.array([EMPTY])]).astype(np.uint8)
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours.ravel().tolist())
    return palette


def nice_limit(arrays: Sequence[np.ndarray | None], percentile: float = 99.9) -> float:
    """A round symmetric colour limit (1, 2, 2.5, 5 x 10^k) covering the largest
    per-panel ``percentile`` of |values|: the strongest panel is not clipped, a few
    outlier pixels do not flatten the rest."""
    tops = [float(np.percentile(np.abs(a), percentile)) for a in arrays if a is not None]
    top = max(tops, default=0.0)
    if top <= 0 or not np.isfinite(top):
        return 1.0
    magnitude = 10 ** np.floor(np.log10(top))
    return float(next(s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= top * 0.999))


@dataclass(frozen=True)
class Cell:
    """One panel: values and the scale that colours them."""

    values: np.ndarray
    scale: Scale


@dataclass(frozen=True)
class ColourBar:
    """A horizontal colour bar under the grid, spanning the given columns."""

    scale: Scale
    label: str
    columns: Sequence[int]


def _panel_size(
    cells: Sequence[Sequence[Cell | None]], panel_px: float, integer_zoom: bool
) -> tuple[int, int]:
    """Panel size: ``panel_px`` on the longer side; an integer zoom (pixels stay squares)
    when the zoom is 3 or more, or whenever ``integer_zoom`` asks for it."""
    first = next(c for row in cells for c in row if c is not None)
    h, w = first.values.shape
    zoom = panel_px / max(h, w)
    if zoom >= 3 or (integer_zoom and zoom >= 1):
        zoom = int(zoom)
    return max(1, round(w * zoom)), max(1, round(h * zoom))


def _render(cell: Cell, size: tuple[int, int]) -> Image.Image:
    image = Image.fromarray(cell.scale.rgb(cell.values))
    if image.size == size:
        return image
    integer = size[0] % image.width == 0 and size[1] % image.height == 0
    method = Image.Resampling.NEAREST if integer else Image.Resampling.LANCZOS
    return image.resize(size, method)


def _wrap(text: str, width: int, f: ImageFont.FreeTypeFont) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            trial = f"{current} {word}".strip()
            if current and f.getlength(trial) > width:
                lines.append(current)
                current = word
            else:
                current = trial
        lines.append(current)
    return lines


def _tick_text(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def grid(
    cells: Sequence[Sequence[Cell | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    bars: Sequence[ColourBar] = (),
    panel_px: int = PANEL_PX,
    missing: str = "not computed",
    max_width: int = MAX_WIDTH,
    integer_zoom: bool = False,
) -> bytes:
    """Draw rows x columns of panels with labels and colour bars; returns PNG bytes.

    ``integer_zoom`` keeps noise-like maps (sinograms) crisp and small: no resampling
    between 1x and 3x, only whole-pixel zoom."""
    label_font, small = font(13), font(11)
    row_w = max(
        [
            max((label_font.getlength(s) for s in _wrap(r, 130, label_font)), default=0)
            for r in row_labels
        ]
        + [0]
    )
    left = int(row_w) + 14
    fit = (max_width - left - 8) / len(col_labels) - GAP
    pw, ph = _panel_size(cells, min(panel_px, fit), integer_zoom)
    col_lines = max(len(_wrap(c, pw - 4, label_font)) for c in col_labels)
    top = 8 + 16 * col_lines
    lanes = _bar_lanes(bars)
    lane_h = [
        34 + 14 * max(len(_bar_label(b, pw, len(b.columns))) for b in lane) + 6 for lane in lanes
    ]
    bar_h = sum(lane_h)
    n_rows, n_cols = len(cells), len(col_labels)
    width = left + n_cols * (pw + GAP) + 8
    height = top + n_rows * (ph + GAP) + bar_h + 6
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x0 = [left + j * (pw + GAP) for j in range(n_cols)]
    y0 = [top + i * (ph + GAP) for i in range(n_rows)]
    for j, label in enumerate(col_labels):
        lines = _wrap(label, pw - 4, label_font)
        for k, line in enumerate(lines):
            y = top - 6 - 16 * (len(lines) - k)
            draw.text((x0[j] + pw / 2, y), line, fill=INK, font=label_font, anchor="mt")
    for i, label in enumerate(row_labels):
        lines = _wrap(label, 130, label_font)
        y = y0[i] + ph / 2 - 8 * len(lines)
        for k, line in enumerate(lines):
            draw.text((left - 8, y + 16 * k), line, fill=INK, font=label_font, anchor="ra")
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            box = (x0[j], y0[i], x0[j] + pw - 1, y0[i] + ph - 1)
            if cell is None:
                draw.rectangle(box, fill=EMPTY)
                draw.text(
                    (x0[j] + pw / 2, y0[i] + ph / 2), missing, fill=MUTED, font=small, anchor="mm"
                )
                continue
            canvas.paste(_render(cell, (pw, ph)), (x0[j], y0[i]))
    y = top + n_rows * (ph + GAP) + 4
    for lane, height in zip(lanes, lane_h, strict=True):
        for bar in lane:
            lines = _bar_label(bar, pw, len(bar.columns))
            _draw_bar(canvas, draw, bar, x0[min(bar.columns)], x0[max(bar.columns)] + pw, y, lines)
        y += height
    scales = {c.scale for row in cells for c in row if c is not None} | {b.scale for b in bars}
    cmaps = {sc.cmap for sc in scales}
    only_diverging = all(sc.window is None for sc in scales) and len(cmaps) == 1
    palette = _palette(cmaps.pop()) if only_diverging else None
    return to_png(canvas, palette)


def _bar_lanes(bars: Sequence[ColourBar]) -> list[list[ColourBar]]:
    """Bars packed into rows: a bar joins the first row whose bars span other columns, so
    one bar per column (e.g. a scale per ε) sits side by side under its own column."""
    lanes: list[list[ColourBar]] = []
    for bar in bars:
        span = set(range(min(bar.columns), max(bar.columns) + 1))
        for lane in lanes:
            if all(span.isdisjoint(range(min(b.columns), max(b.columns) + 1)) for b in lane):
                lane.append(bar)
                break
        else:
            lanes.append([bar])
    return lanes


def _bar_label(bar: ColourBar, panel_w: int, n_cols: int) -> list[str]:
    """The bar's label wrapped to the width of the columns it spans."""
    return _wrap(bar.label, max(60, n_cols * panel_w - 8), font(11))


def _draw_bar(
    canvas, draw, bar: ColourBar, x_left: int, x_right: int, y: int, label: list[str]
) -> None:
    inset = 30 if x_right - x_left > 200 else 12
    x_left, x_right = x_left + inset, x_right - inset
    ramp = np.linspace(bar.scale.low, bar.scale.high, max(2, x_right - x_left))[None, :]
    strip = Image.fromarray(bar.scale.rgb(np.repeat(ramp, 12, axis=0)))
    canvas.paste(strip, (x_left, y))
    draw.rectangle((x_left, y, x_right - 1, y + 11), outline=MUTED)
    f = font(11)
    span = bar.scale.high - bar.scale.low
    ticks = bar.scale.ticks()
    if x_right - x_left < 200:  # a one-column bar: the limits and the centre only
        ticks = [ticks[0], ticks[len(ticks) // 2], ticks[-1]]
    for tick in ticks:
        x = x_left + (tick - bar.scale.low) / span * (x_right - x_left - 1)
        draw.line((x, y + 12, x, y + 16), fill=INK)
        draw.text((x, y + 17), _tick_text(tick), fill=INK, font=f, anchor="mt")
    for k, line in enumerate(label):
        draw.text(((x_left + x_right) / 2, y + 32 + 14 * k), line, fill=INK, font=f, anchor="mt")


def to_png(image: Image.Image, palette: Image.Image | None = None) -> bytes:
    """PNG, as small as it goes: grey-scale, else a palette (``palette`` when given: every
    colour of the image is in it, up to text antialiasing), else RGB."""
    rgb = image.convert("RGB")
    array = np.asarray(rgb)
    if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(
        array[..., 1], array[..., 2]
    ):
        rgb = rgb.convert("L")
    elif palette is not None:
        rgb = rgb.quantize(palette=palette, dither=Image.Dither.NONE)
    elif rgb.getcolors(256) is not None:
        rgb = rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=True)
    return out.getvalue()
