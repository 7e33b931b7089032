"""Helpers that derive small test inputs from the clinical slices in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom


def reduced_slice(src: Path, dst: Path, factor: int = 4) -> Path:
    """A clinical slice with its pixels reduced by factor x factor block means.

    The header (UIDs, geometry, rescale) stays clinical; PixelSpacing grows by `factor`
    so the field of view is unchanged. Small slices keep a test corpus fast.
    """
    ds = pydicom.dcmread(src)
    raw = ds.pixel_array.astype(np.float64)
    rows, cols = raw.shape[0] // factor, raw.shape[1] // factor
    small = raw[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    ds.PixelData = np.rint(small.mean(axis=(1, 3))).astype(ds.pixel_array.dtype).tobytes()
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [f"{float(v) * factor:.6g}" for v in ds.PixelSpacing]
    ds.save_as(dst, enforce_file_format=True)
    return dst
