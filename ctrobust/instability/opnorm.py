"""Spectral norm ||A||_2 of any projector with ``A``, ``A_adjoint`` and ``n``."""

from __future__ import annotations

import torch

from ctrobust.physics import power_norm


def operator_norm(op, n_iter: int = 50, seed: int = 0) -> float:
    """``op.norm()`` when the operator has it, else power iteration on A^T A.

    Power iteration approaches the norm from below; callers that need a safe step size
    multiply by a margin (the TV solver uses 1.02).
    """
    if hasattr(op, "norm"):
        return float(op.norm())
    dtype = getattr(op, "dtype", torch.float32)
    device = getattr(op, "device", "cpu")
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(1, 1, op.n, op.n, generator=gen, dtype=dtype).to(device)
    return power_norm(op.A, op.A_adjoint, x0, n_iter)
