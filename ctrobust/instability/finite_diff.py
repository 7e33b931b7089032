"""Discrete gradient, divergence and total variation for batched images (B, 1, N, N).

Forward differences with a zero last row/column (Neumann boundary), so that
``divergence = -gradient^T`` exactly and ``||gradient||^2 <= 8``.
"""

from __future__ import annotations

import torch

GRADIENT_NORM_BOUND = 8.0**0.5
"""Upper bound of the operator norm of :func:`gradient` (forward differences in 2-D)."""


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward-difference gradient of (B, 1, N, M) images -> (B, 2, N, M) (rows, columns)."""
    g = torch.zeros(x.shape[0], 2, *x.shape[-2:], dtype=x.dtype, device=x.device)
    g[:, 0, :-1, :] = x[:, 0, 1:, :] - x[:, 0, :-1, :]
    g[:, 1, :, :-1] = x[:, 0, :, 1:] - x[:, 0, :, :-1]
    return g


def divergence(p: torch.Tensor) -> torch.Tensor:
    """Negative adjoint of :func:`gradient`: (B, 2, N, M) -> (B, 1, N, M)."""
    pr, pc = p[:, 0], p[:, 1]
    dr = torch.zeros_like(pr)
    dr[:, 0, :] = pr[:, 0, :]
    dr[:, 1:-1, :] = pr[:, 1:-1, :] - pr[:, :-2, :]
    dr[:, -1, :] = -pr[:, -2, :]
    dc = torch.zeros_like(pc)
    dc[:, :, 0] = pc[:, :, 0]
    dc[:, :, 1:-1] = pc[:, :, 1:-1] - pc[:, :, :-2]
    dc[:, :, -1] = -pc[:, :, -2]
    return (dr + dc).unsqueeze(1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation per sample: sum over pixels of |grad x|_2, shape (B,)."""
    g = gradient(x)
    return g.pow(2).sum(dim=1).sqrt().flatten(1).sum(dim=1)
