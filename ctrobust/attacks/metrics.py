"""Robustness figures of an attack: rho-hat (Raj eq. 8) and image quality of attacked slices.

PSNR and SSIM follow the project convention of :mod:`ctrobust.metrics`: relative attenuation over
the fixed data range ``ctrobust.metrics.DATA_RANGE`` (2.0, i.e. -1000..+1000 HU), so clean and
attacked figures, models and runs are directly comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ctrobust.metrics import DATA_RANGE, psnr_per_slice, ssim_per_slice


@dataclass(frozen=True)
class RhoHat:
    """rho-hat(eps) = mean over slices of Delta_max (Raj eq. 8), with the per-slice values.

    Attributes:
        value: the sample mean of Delta_max.
        stderr: standard error of that mean (0 for a single slice).
        per_slice: Delta_max of every slice, (N,).
    """

    value: float
    stderr: float
    per_slice: Tensor


def rho_hat(errors: Tensor) -> RhoHat:
    """Raj eq. 8 from per-slice worst-case errors Delta_max(x_i, eps), any shape (flattened)."""
    per_slice = errors.detach().flatten().double().cpu()
    if per_slice.numel() == 0:
        raise ValueError("rho_hat needs at least one slice")
    n = per_slice.numel()
    stderr = float(per_slice.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return RhoHat(value=float(per_slice.mean()), stderr=stderr, per_slice=per_slice)


@dataclass(frozen=True)
class SliceQuality:
    """PSNR (dB) and SSIM per slice over ``data_range``, (N,) each."""

    psnr: Tensor
    ssim: Tensor
    data_range: float


def slice_quality(reconstruction: Tensor, x_true: Tensor) -> SliceQuality:
    """PSNR and SSIM of (B,1,N,N) reconstructions against the ground truth, per slice."""
    return SliceQuality(
        psnr=psnr_per_slice(reconstruction.detach(), x_true.detach()).cpu(),
        ssim=ssim_per_slice(reconstruction, x_true).to(torch.float64),
        data_range=DATA_RANGE,
    )
