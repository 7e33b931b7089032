"""Is a decoded slice plausible CT? Refuse what would silently poison a run, flag the rest.

A slice is refused (with the field to blame) when its HU cannot be CT: non-finite
values, a bulk of pixels outside about -1100..4000 HU after rescale (a wrong
RescaleSlope/Intercept), signed data marked unsigned (or the reverse), or a pixel
layout that contradicts Rows x Columns. A few pixels outside the range (metal, a
padding ring below air) are kept; the series reports them.
"""

from __future__ import annotations

import numpy as np

#: HU range a CT slice's bulk must lie in after rescale (air with noise .. dense bone/contrast).
PLAUSIBLE_HU = (-1100.0, 4000.0)
#: Percentiles that must lie in PLAUSIBLE_HU (a padding value filling the corners is left out).
BULK_PERCENTILES = (0.5, 99.5)
#: A repeated minimum below this, covering at least PADDING_FRACTION of the slice, is padding.
PADDING_BELOW_HU = -1024.0
PADDING_FRACTION = 0.02
#: Adjacent rows differing this many times more than adjacent columns (or the reverse): the
#: header's Rows x Columns do not describe the stored image. The 182 shared clinical
#: slices measure <= 1.95.
LAYOUT_ANISOTROPY = 4.0


def _bulk(hu: np.ndarray) -> np.ndarray:
    """Pixels of a subsampled slice without a padding value repeated in the corners."""
    sample = hu[::2, ::2].ravel()
    lowest = sample.min()
    if lowest < PADDING_BELOW_HU:
        at_lowest = sample == lowest
        if at_lowest.mean() >= PADDING_FRACTION:
            sample = sample[~at_lowest]
    return sample


def bulk_range(hu: np.ndarray) -> tuple[float, float]:
    """(0.5th, 99.5th) percentile of the slice's HU, padding left out."""
    sample = _bulk(hu)
    if sample.size == 0:
        return float(hu.min()), float(hu.max())
    lo, hi = np.percentile(sample, BULK_PERCENTILES)
    return float(lo), float(hi)


def _plausible(hu: np.ndarray) -> bool:
    lo, hi = bulk_range(hu)
    return PLAUSIBLE_HU[0] <= lo and hi <= PLAUSIBLE_HU[1]


def _signedness_reason(
    raw: np.ndarray, pixel_representation: int, slope: float, intercept: float
) -> str | None:
    """Signed data marked unsigned (negative values wrapped to 32768..65535), or the reverse."""
    if raw.dtype.itemsize != 2 or raw.dtype.kind not in "ui":
        return None
    other = raw.view(np.int16 if raw.dtype.kind == "u" else np.uint16)
    alternative = other.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if not np.isfinite(alternative).all() or not _plausible(alternative):
        return None
    lo, hi = bulk_range(alternative)
    if raw.dtype.kind == "u":
        share = float((raw >= 32768).mean())
        said, data = "(unsigned)", f"{100 * share:.0f} % of stored values are >= 32768"
        other_kind = "signed"
    else:
        share = float((raw < 0).mean())
        said, data = "(signed)", f"{100 * share:.0f} % of stored values are negative"
        other_kind = "unsigned"
    return (
        f"PixelRepresentation {pixel_representation} {said} contradicts the data: {data}, "
        f"and read as {other_kind} they give plausible HU {lo:.0f}..{hi:.0f}; not guessed"
    )


def _layout_reason(raw: np.ndarray) -> str | None:
    """Rows x Columns that do not match the stored image (e.g. 1024 x 256 over 512 x 512)."""
    rows, cols = raw.shape
    if min(rows, cols) < 8:
        return None
    image = raw.astype(np.float32)
    # every 4th pair of neighbours is enough for a mean, and 4 x faster
    r, c = np.arange(0, rows - 1, 4), np.arange(0, cols - 1, 4)
    down = float(np.abs(image[r + 1] - image[r]).mean())
    across = float(np.abs(image[:, c + 1] - image[:, c]).mean())
    if down == 0 or across == 0:
        return None
    ratio = max(down / across, across / down)
    side = int(round(np.sqrt(rows * cols)))
    hint = ""
    if rows != cols and side * side == rows * cols:
        hint = f"; the {rows * cols} pixels read as {side} x {side} would be an image"
    if ratio > LAYOUT_ANISOTROPY:
        return (
            f"Rows x Columns ({rows} x {cols}) contradict the pixel data: neighbouring "
            f"{'rows' if down > across else 'columns'} differ {ratio:.0f} times more than "
            f"neighbouring {'columns' if down > across else 'rows'}{hint}"
        )
    return None


def slice_refusal(
    raw: np.ndarray, hu: np.ndarray, pixel_representation: int, slope: float, intercept: float
) -> str | None:
    """Why this decoded slice cannot be CT (None when it is plausible)."""
    bad = ~np.isfinite(hu)
    if bad.any():
        return (
            f"HU not finite in {int(bad.sum())} pixel(s): RescaleSlope {slope:g} / "
            f"RescaleIntercept {intercept:g} overflow float32"
        )
    if not _plausible(hu):
        flipped = _signedness_reason(raw, pixel_representation, slope, intercept)
        if flipped:
            return flipped
        lo, hi = bulk_range(hu)
        return (
            f"HU {lo:.6g}..{hi:.6g} (0.5th..99.5th percentile) outside the plausible CT range "
            f"{PLAUSIBLE_HU[0]:g}..{PLAUSIBLE_HU[1]:g}: check RescaleSlope ({slope:g}) and "
            f"RescaleIntercept ({intercept:g})"
        )
    return _layout_reason(raw)
