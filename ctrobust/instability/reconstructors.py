"""Reconstructors as plain callables ``(op, y) -> x``, so methods can be swept over operators.

A network trained at one view count enters through its image-domain part N: FBPConvNet is
f(y) = N(fbp(y)), and :func:`network_on_fbp` applies N to the FBP of whatever view count the
operator has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .sirt import sirt_reconstruct
from .tv import tv_reconstruct

Reconstructor = Callable[[Any, torch.Tensor], torch.Tensor]
"""A reconstruction method: (operator, sinograms (B, 1, V, D)) -> images (B, 1, N, N)."""


def fbp_reconstructor(op, y: torch.Tensor) -> torch.Tensor:
    """Filtered back projection with the operator's own view count."""
    with torch.no_grad():
        return op.fbp(y)


def network_on_fbp(image_net: Callable[[torch.Tensor], torch.Tensor]) -> Reconstructor:
    """(op, y) -> image_net(op.fbp(y)) without gradients, e.g. FBPConvNet's U-Net part."""

    def reconstruct(op, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return image_net(op.fbp(y))

    return reconstruct


def tv_reconstructor(lam: float, **tv_kwargs) -> Reconstructor:
    """(op, y) -> converged TV reconstruction with weight ``lam`` (see ``tv_reconstruct``)."""

    def reconstruct(op, y: torch.Tensor) -> torch.Tensor:
        return tv_reconstruct(op, y, lam, **tv_kwargs)[0]

    return reconstruct


def sirt_reconstructor(**sirt_kwargs) -> Reconstructor:
    """(op, y) -> SIRT reconstruction (see ``sirt_reconstruct``)."""

    def reconstruct(op, y: torch.Tensor) -> torch.Tensor:
        return sirt_reconstruct(op, y, **sirt_kwargs)[0]

    return reconstruct
