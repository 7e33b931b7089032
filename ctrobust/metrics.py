"""Image-quality figures used everywhere, with one stated convention.

PSNR and SSIM are computed on relative attenuation x = mu/mu_water over a fixed
data range of 2.0, i.e. 2000 HU (-1000..+1000 HU), so numbers are comparable
across slices, series, methods and runs.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

DATA_RANGE = 2.0
DATA_RANGE_NOTE = "PSNR/SSIM over a fixed 2000 HU range (relative attenuation 0..2)"


def psnr_per_slice(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each (1,N,N) slice of a (B,1,N,N) batch."""
    mse = (estimate - truth).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-20))


def ssim_per_slice(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """SSIM (scikit-image, 7x7 window) of each slice of a (B,1,N,N) batch."""
    est = estimate.detach().cpu().double().numpy()
    ref = truth.detach().cpu().double().numpy()
    values = [
        structural_similarity(e[0], r[0], data_range=DATA_RANGE)
        for e, r in zip(est, ref, strict=True)
    ]
    return torch.tensor(np.asarray(values))


def summarize(values: torch.Tensor) -> dict[str, float]:
    """Mean, std, min and max of per-slice figures, as plain floats for JSON."""
    v = values.double()
    return {
        "mean": float(v.mean()),
        "std": float(v.std(unbiased=False)),
        "min": float(v.min()),
        "max": float(v.max()),
    }
