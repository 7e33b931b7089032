"""ASTRA's own CPU 'linear' projector, called one slice at a time.

This is the reference every other backend must match, and the fallback for geometries whose
system matrix would not fit in memory. ASTRA computes in float32 whatever the input dtype.
"""

from __future__ import annotations

import weakref

import astra
import numpy as np


def astra_geometries(n: int, angles: np.ndarray, n_det: int) -> tuple[dict, dict]:
    """Volume and projection geometry: n x n unit pixels, unit-width detector centred on 0."""
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n_det, angles)
    return vol_geom, proj_geom


class AstraProjector:
    """Forward and back projection of stacks of slices with ASTRA's CPU 'linear' projector."""

    def __init__(self, n: int, angles: np.ndarray, n_det: int) -> None:
        self._args = (n, np.asarray(angles), n_det)
        vol_geom, proj_geom = astra_geometries(n, angles, n_det)
        self.projector_id = astra.create_projector("linear", proj_geom, vol_geom)
        self.shape_image = (n, n)
        self.shape_sino = (len(angles), n_det)
        weakref.finalize(self, astra.projector.delete, self.projector_id)

    def __reduce__(self) -> tuple:
        """Copies and pickles get a projector of their own (ASTRA ids are per process)."""
        return (AstraProjector, self._args)

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Sinograms (B, V, D) of images (B, N, N)."""
        out = np.empty((images.shape[0], *self.shape_sino), dtype=np.float32)
        for b, image in enumerate(images):
            sino_id, out[b] = astra.create_sino(np.ascontiguousarray(image), self.projector_id)
            astra.data2d.delete(sino_id)
        return out

    def adjoint(self, sinos: np.ndarray) -> np.ndarray:
        """Back projections (B, N, N) of sinograms (B, V, D)."""
        out = np.empty((sinos.shape[0], *self.shape_image), dtype=np.float32)
        for b, sino in enumerate(sinos):
            vol_id, out[b] = astra.create_backprojection(
                np.ascontiguousarray(sino), self.projector_id
            )
            astra.data2d.delete(vol_id)
        return out
