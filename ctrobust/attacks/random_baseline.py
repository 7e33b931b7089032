"""Random control for the worst-case attack: Gaussian perturbations of the same l2 norm.

The report sets Delta_max against what ordinary noise of the same size does; a large gap says the
instability is specific to a direction, not a matter of noise amplification.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ctrobust.attacks._ball import (
    default_generator,
    gaussian_like,
    reconstruction_error,
    resolve_radius,
    scale_to_norm,
)
from ctrobust.attacks.pga import Reconstructor


@dataclass(frozen=True)
class RandomBaselineResult:
    """Errors of f under random perturbations on the eps sphere; tensors batch-first.

    Attributes:
        mean_error: mean over draws of ||f(y + e) - x|| per sample, (B,).
        max_error: max over draws, (B,).
        errors: every draw, (B, n_draws).
        clean_error: ||f(y) - x|| per sample, (B,).
        eps: absolute l2 norm of the draws per sample, (B,).
    """

    mean_error: Tensor
    max_error: Tensor
    errors: Tensor
    clean_error: Tensor
    eps: Tensor


@torch.no_grad()
def random_perturbation_baseline(
    f: Reconstructor,
    y: Tensor,
    x_true: Tensor,
    eps: float | Tensor,
    *,
    n_draws: int = 8,
    relative: bool = False,
    generator: torch.Generator | None = None,
) -> RandomBaselineResult:
    """Reconstruction error under i.i.d. Gaussian perturbations rescaled to ||e_i|| = eps_i.

    Args:
        f: map from sinograms (B,1,V,D) to images (B,1,N,N).
        y: clean measurements.
        x_true: reference images.
        eps: l2 norm of the perturbations, float or (B,); relative to ||y_i|| if ``relative``.
        n_draws: independent draws per sample (one forward pass each).
        relative: interpret eps relative to each sample's ||y||.
        generator: random source; None means a CPU generator seeded 0.
    """
    if n_draws < 1:
        raise ValueError("n_draws must be >= 1")
    y, x_true = y.detach(), x_true.detach()
    radius = resolve_radius(eps, y, relative)
    gen = default_generator(generator)
    clean_error = reconstruction_error(f(y), x_true)
    draws = [
        reconstruction_error(f(y + scale_to_norm(gaussian_like(y, gen), radius)), x_true)
        for _ in range(n_draws)
    ]
    errors = torch.stack(draws, dim=1)
    return RandomBaselineResult(
        mean_error=errors.mean(dim=1),
        max_error=errors.amax(dim=1),
        errors=errors,
        clean_error=clean_error,
        eps=radius,
    )
