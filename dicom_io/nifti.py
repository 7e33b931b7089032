"""NIfTI export of a (z, y, x) volume with its affine taken from the DICOM geometry."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from dicom_io.atomic import atomic_write
from dicom_io.geometry import Grid
from dicom_io.series import SourceSeries


def _affine(affine_source: SourceSeries | Grid | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """RAS affine for a (z, y, x) volume of `shape`.

    A series or grid with another in-plane matrix is resampled to the volume's matrix
    over the same field of view (a reconstruction of the whole slice on N x N).
    """
    if isinstance(affine_source, SourceSeries):
        affine_source = affine_source.grid
    if isinstance(affine_source, Grid):
        if affine_source.shape[0] != shape[0]:
            raise ValueError(f"volume has {shape[0]} slices, geometry {affine_source.shape[0]}")
        if affine_source.shape[1:] != tuple(shape[1:]):
            affine_source = affine_source.resampled(shape[1], shape[2])
        return affine_source.affine_ras()
    affine = np.asarray(affine_source, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    return affine


def is_sheared(affine: np.ndarray, tol: float = 1e-6) -> bool:
    """True when the affine's axes are not mutually perpendicular."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = axes / np.linalg.norm(axes, axis=0)
    gram = unit.T @ unit
    return bool(np.abs(gram - np.eye(3)).max() > tol)


def write_nifti(
    volume: np.ndarray, affine_source: SourceSeries | Grid | np.ndarray, path: str | os.PathLike
) -> Path:
    """Write `volume` (z, y, x) as float32 NIfTI at `path` (.nii or .nii.gz), atomically.

    The array is stored as (x, y, z); the affine maps (i, j, k) to RAS mm: DICOM LPS
    with its first two axes negated. `affine_source` is a SourceSeries, a Grid or a 4x4
    RAS affine. sform is set (code 1, scanner coordinates), and qform too unless the
    affine is sheared (a gantry-tilted stack), which a qform cannot express (code 0).
    """
    data = np.asarray(volume, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"need a (z, y, x) volume, got shape {data.shape}")
    affine = _affine(affine_source, data.shape)
    image = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    # A sheared affine (a gantry-tilted stack of axial slices) has no qform (a rotation,
    # zooms and a shift): give it code 0 rather than a rigid approximation; the sform
    # keeps the true geometry.
    image.set_qform(affine, code=0 if is_sheared(affine) else 1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    out = Path(path)
    payload = image.to_bytes()
    if out.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write(out, lambda fh: fh.write(payload))
    return out
