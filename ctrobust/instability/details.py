"""Small structural changes (Antun et al. 2020): card symbols and text rendered as image details.

Glyphs come from DejaVu Sans (shipped with matplotlib, which contains the suit symbols
U+2660 ♠, U+2665 ♥, U+2666 ♦, U+2663 ♣), rendered large and box-filtered down to the target
size, so the masks are antialiased in [0, 1]. A detail of contrast c HU adds c / 1000 to the
relative attenuation x = mu / mu_water (HU = 1000 (x - 1), so a difference of c HU is c / 1000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

SUITS = "\u2660\u2665\u2666\u2663"
"""Spades, hearts, diamonds, clubs."""

RENDER_PX = 256
"""Font size (pixels) of the high-resolution rendering that is box-filtered down."""


def default_font_path(bold: bool = True) -> str:
    """Path of DejaVu Sans (bold by default: thicker strokes survive small sizes)."""
    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return font_manager.findfont(props, fallback_to_default=False)


def _height_px(height: float, unit: Literal["px", "mm"], pixel_size_mm: float | None) -> float:
    if unit == "px":
        return float(height)
    if unit == "mm":
        if pixel_size_mm is None or pixel_size_mm <= 0:
            raise ValueError("unit='mm' needs a positive pixel_size_mm")
        return float(height) / float(pixel_size_mm)
    raise ValueError(f"unit must be 'px' or 'mm', got {unit!r}")


def render_stamp(text: str, height_px: float, font_path: str | None = None) -> np.ndarray:
    """Tight antialiased mask (h, w) in [0, 1] of ``text`` whose ink is ``height_px`` tall."""
    if not text.strip():
        raise ValueError("text to render is empty")
    font = ImageFont.truetype(font_path or default_font_path(), RENDER_PX)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), text, font=font, fill=255)
    ink = canvas.crop(canvas.getbbox())
    scale = height_px / ink.height
    size = (max(1, round(ink.width * scale)), max(1, round(height_px)))
    small = ink.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def place(stamp: np.ndarray | torch.Tensor, n: int, center: tuple[float, float]) -> torch.Tensor:
    """An (n, n) float32 mask with ``stamp`` centred at ``center`` = (row, col) in pixels."""
    stamp = torch.as_tensor(stamp).detach().to("cpu", torch.float32)
    h, w = stamp.shape
    top, left = round(center[0] - h / 2), round(center[1] - w / 2)
    if top < 0 or left < 0 or top + h > n or left + w > n:
        raise ValueError(f"a {h}x{w} detail centred at {center} does not fit in {n}x{n}")
    mask = torch.zeros(n, n)
    mask[top : top + h, left : left + w] = stamp
    return mask


def render_text(
    text: str,
    n: int,
    height: float = 8.0,
    center: tuple[float, float] | None = None,
    unit: Literal["px", "mm"] = "px",
    pixel_size_mm: float | None = None,
    binary: bool = False,
    font_path: str | None = None,
) -> torch.Tensor:
    """Mask (n, n) in [0, 1] of ``text`` (e.g. "CAN U SEE IT").

    Args:
        text: the string; any glyph DejaVu Sans has.
        n: image side in pixels.
        height: ink height of the whole string (cap height for capitals), in ``unit``.
        center: (row, col) of the text's centre in pixels; image centre when None.
        unit: "px" or "mm" (then ``pixel_size_mm`` converts).
        pixel_size_mm: pixel size in mm, needed for ``unit="mm"``.
        binary: threshold the antialiased mask at 0.5.
        font_path: a TrueType font; bold DejaVu Sans when None.
    """
    stamp = render_stamp(text, _height_px(height, unit, pixel_size_mm), font_path)
    mask = place(stamp, n, center if center is not None else (n / 2, n / 2))
    return (mask >= 0.5).float() if binary else mask


def render_symbols(
    n: int,
    symbols: str = SUITS,
    height: float = 8.0,
    center: tuple[float, float] | None = None,
    unit: Literal["px", "mm"] = "px",
    pixel_size_mm: float | None = None,
    binary: bool = False,
    font_path: str | None = None,
) -> torch.Tensor:
    """Mask (n, n) of the card symbols in a row, one space apart (see :func:`render_text`)."""
    return render_text(" ".join(symbols), n, height, center, unit, pixel_size_mm, binary, font_path)


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the non-zero part of an (n, n) mask, bottom/right exclusive."""
    rows = torch.nonzero(mask.abs().sum(dim=1) > 0).flatten()
    cols = torch.nonzero(mask.abs().sum(dim=0) > 0).flatten()
    if rows.numel() == 0:
        raise ValueError("mask is empty")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@dataclass(frozen=True)
class DetailInsertion:
    """Images with a detail, the detail itself (B, 1, N, N) and where it went.

    ``boxes`` are per-sample (top, left, bottom, right) of the detail's bounding box.
    """

    x: torch.Tensor
    detail: torch.Tensor
    boxes: list[tuple[int, int, int, int]]


def auto_center(
    image: torch.Tensor, box_hw: tuple[int, int], body_threshold: float = 0.5, margin: int = 2
) -> tuple[float, float]:
    """Centre (row, col) for a box of ``box_hw`` that lies inside the body of ``image`` (N, N).

    The body is ``image > body_threshold`` (0.5 = -500 HU): the box grown by ``margin`` pixels
    must be entirely body; among such places the one nearest the body's centroid is chosen.
    """
    h, w = box_hw[0] + 2 * margin, box_hw[1] + 2 * margin
    body = (image.detach().cpu() > body_threshold).to(torch.float32)
    if h > body.shape[0] or w > body.shape[1]:
        raise ValueError(f"a {box_hw} detail does not fit in a {tuple(body.shape)} image")
    inside = F.avg_pool2d(body[None, None], (h, w), stride=1)[0, 0] > 1.0 - 1e-6
    valid = torch.nonzero(inside).to(torch.float32)
    if valid.numel() == 0:
        raise ValueError(f"no place where a {box_hw} detail lies inside the body")
    rows, cols = torch.nonzero(body > 0, as_tuple=True)
    centroid = torch.stack([rows.float().mean(), cols.float().mean()])
    centers = valid + torch.tensor([h / 2, w / 2])
    best = centers[(centers - centroid).pow(2).sum(dim=1).argmin()]
    return float(best[0]), float(best[1])


def insert_detail(
    x: torch.Tensor,
    mask: torch.Tensor,
    contrast_hu: float,
    position: Literal["auto"] | tuple[float, float] | None = "auto",
    body_threshold: float = 0.5,
    margin: int = 2,
) -> DetailInsertion:
    """Add ``contrast_hu`` HU times ``mask`` to every image of ``x`` (B, 1, N, N).

    Args:
        x: relative attenuation images.
        mask: (N, N) mask in [0, 1] from :func:`render_text` / :func:`render_symbols`.
        contrast_hu: detail contrast in HU (added as contrast_hu / 1000 in x).
        position: "auto" (per image, inside the body, see :func:`auto_center`), a
            (row, col) centre for the mask's content, or None to keep the mask where it is.
        body_threshold: body threshold in x for "auto".
        margin: pixels of body required around the detail's box for "auto".
    """
    n = x.shape[-1]
    mask = mask.detach().cpu()
    top, left, bottom, right = mask_bbox(mask)
    stamp = mask[top:bottom, left:right]
    details, boxes = [], []
    for image in x[:, 0]:
        if position is None:
            placed = mask
        elif position == "auto":
            center = auto_center(image, tuple(stamp.shape), body_threshold, margin)
            placed = place(stamp, n, center)
        else:
            placed = place(stamp, n, position)
        boxes.append(mask_bbox(placed))
        details.append(placed)
    detail = (contrast_hu / 1000.0) * torch.stack(details)[:, None].to(x.device, x.dtype)
    return DetailInsertion(x=x + detail, detail=detail, boxes=boxes)
