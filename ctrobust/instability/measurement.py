"""Measurements for the instability test: the run's noise model at any view count.

With and without an inserted detail the noise realisation must be the same, or the detail
score also measures noise; and each view count of the more-views sweep gets its own fixed
realisation, drawn from the same low-dose model as the run's measured sinograms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrobust.physics.units import add_poisson_noise


class NoisyMeasurement:
    """(op, image) -> A image + one fixed Poisson noise realisation per view count.

    The noise is drawn once per operator view count from ``A x_ref`` with ``i0`` photons per
    detector pixel (noise-free when ``i0`` is None) and added to every image measured with an
    operator of that view count.
    """

    def __init__(self, x_ref: Tensor, pixel_mm: Tensor, i0: float | None, mu: float, seed: int):
        self.x_ref, self.pixel_mm, self.i0, self.mu, self.seed = x_ref, pixel_mm, i0, mu, seed
        self._noise: dict[int, Tensor] = {}

    def __call__(self, op, image: Tensor) -> Tensor:
        if op.n_views not in self._noise:
            clean = op.A(self.x_ref)
            generator = torch.Generator(device=clean.device).manual_seed(self.seed + op.n_views)
            noisy = torch.cat(
                [
                    add_poisson_noise(clean[i : i + 1], self.i0, float(px), generator, self.mu)
                    for i, px in enumerate(self.pixel_mm)
                ]
            )
            self._noise[op.n_views] = noisy - clean
        return op.A(image) + self._noise[op.n_views]
