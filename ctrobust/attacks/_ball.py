"""Per-sample l2 geometry shared by the attacks: norms, radii, ball projection, random draws.

Every attack works on a batch and treats each sample independently, so norms are taken over all
dimensions but the first, and radii are (B,) tensors broadcast back to the sample shape.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_norms(t: Tensor) -> Tensor:
    """l2 norm of each sample of a batch: (B, ...) -> (B,)."""
    return t.flatten(1).norm(dim=1)


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) tensor so that it broadcasts against a (B, ...) tensor."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def reconstruction_error(recon: Tensor, x_true: Tensor) -> Tensor:
    """Delta = ||f(y + delta) - x||_2 per sample, (B,)."""
    return sample_norms(recon - x_true)


def resolve_radius(eps: float | Tensor, y: Tensor, relative: bool) -> Tensor:
    """Absolute l2 radius per sample: eps itself, or eps * ||y_i|| when ``relative``."""
    radius = torch.as_tensor(eps, dtype=y.dtype, device=y.device)
    radius = radius.expand(y.shape[0]).clone() if radius.dim() == 0 else radius.reshape(-1)
    if radius.shape[0] != y.shape[0]:
        raise ValueError(f"eps has {radius.shape[0]} entries for a batch of {y.shape[0]}")
    if bool((radius < 0).any()):
        raise ValueError("eps must be non-negative")
    return radius * sample_norms(y) if relative else radius


def project_l2_ball(delta: Tensor, radius: Tensor) -> Tensor:
    """Project each sample onto the l2 ball of its radius (radius 0 maps to 0)."""
    norms = sample_norms(delta)
    outside = norms > radius
    factor = torch.where(outside, radius / torch.where(outside, norms, 1.0), 1.0)
    return delta * per_sample(factor, delta)


def scale_to_norm(direction: Tensor, norm: Tensor) -> Tensor:
    """Rescale each sample of ``direction`` to the given l2 norm (a zero sample stays zero)."""
    current = sample_norms(direction)
    factor = torch.where(current > 0, norm / torch.where(current > 0, current, 1.0), 0.0)
    return direction * per_sample(factor, direction)


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh CPU generator seeded with 0 (no global RNG state)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def gaussian_like(like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal tensor shaped like ``like``, drawn on the generator's device.

    Drawing where the generator lives and then moving keeps a CPU generator usable for CUDA
    tensors, so one seed gives the same numbers on every device.
    """
    z = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return z.to(like.device)


def random_in_ball(like: Tensor, radius: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform draw from each sample's l2 ball (Gaussian direction, radius * U^(1/d))."""
    direction = gaussian_like(like, generator)
    dim = direction[0].numel()
    u = torch.rand(like.shape[0], generator=generator, device=generator.device, dtype=like.dtype)
    return scale_to_norm(direction, radius * u.to(like.device) ** (1.0 / dim))
