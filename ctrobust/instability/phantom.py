"""A piecewise-constant head phantom in relative attenuation, for tests and benchmarks."""

from __future__ import annotations

import torch
from scipy.ndimage import binary_fill_holes
from skimage.data import shepp_logan_phantom
from skimage.transform import resize


def shepp_logan_head(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Modified Shepp-Logan (scikit-image) as x = mu / mu_water, shape (1, 1, n, n).

    Inside the head x = 0.8 + phantom: brain about 1.0 (0 HU), skull about 1.8 (+800 HU),
    ventricles 0.8 (-200 HU); air outside is 0 (-1000 HU).
    """
    ph = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    head = binary_fill_holes(ph > 0.05)
    return torch.tensor(head * (0.8 + ph), dtype=dtype)[None, None]
