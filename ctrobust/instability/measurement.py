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
        """``A image`` plus the noise; a batch of k copies of the reference batch gets the
        same noise for each copy (details stacked into one batch share the realisation)."""
        noise = self.noise(op)
        if image.shape[0] % noise.shape[0]:
            raise ValueError(
                f"a batch of {image.shape[0]} images is not a multiple of the "
                f"{noise.shape[0]} reference images"
            )
        return op.A(image) + noise.repeat(image.shape[0] // noise.shape[0], 1, 1, 1)

    def noise(self, op) -> Tensor:
        """The fixed noise realisation at the operator's view count, (B, 1, V, D)."""
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
        return self._noise[op.n_views]
