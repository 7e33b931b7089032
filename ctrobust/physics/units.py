"""Physical units of the images and sinograms, and the low-dose (Poisson) measurement model.

Images hold relative attenuation ``x = mu / mu_water`` (air 0, water 1, HU = 1000 (x - 1)).
Sinograms ``y = A x`` are line integrals of ``x`` along rays measured in pixel lengths, so the
dimensionless physical line integral is ``p = integral mu dl = y * pixel_mm * mu_water``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", torch.Tensor, np.ndarray, float)

# Linear attenuation of liquid water at 70 keV, a typical effective energy of a 120 kVp CT
# beam. NIST XCOM / SRD 126 (Hubbell & Seltzer), "Water, Liquid": mu/rho = 0.2059 cm^2/g at
# 60 keV and 0.1837 cm^2/g at 80 keV; log-log interpolation gives 0.1937 cm^2/g at 70 keV,
# times rho = 1.000 g/cm^3 -> 0.1937 /cm = 0.01937 /mm.
MU_WATER_PER_MM = 0.01937


def hu_to_relative(hu: Array) -> Array:
    """Hounsfield units -> relative attenuation ``mu / mu_water`` (air -1000 HU -> 0)."""
    return hu / 1000.0 + 1.0


def relative_to_hu(x: Array) -> Array:
    """Relative attenuation ``mu / mu_water`` -> Hounsfield units."""
    return 1000.0 * (x - 1.0)


def line_integral_scale(pixel_mm: float, mu_water_per_mm: float = MU_WATER_PER_MM) -> float:
    """Factor turning a sinogram of relative attenuation in pixel units into ``int mu dl``."""
    if pixel_mm <= 0 or mu_water_per_mm <= 0:
        raise ValueError("pixel_mm and mu_water_per_mm must be positive")
    return pixel_mm * mu_water_per_mm


def add_poisson_noise(
    y: torch.Tensor,
    i0: float | None,
    pixel_mm: float,
    generator: torch.Generator | None = None,
    mu_water_per_mm: float = MU_WATER_PER_MM,
) -> torch.Tensor:
    """Low-dose sinogram: photon counts ``~ Poisson(i0 exp(-p))`` with ``p = y * scale``.

    Returns ``-log(max(counts, 1) / i0) / scale`` in the units of ``y``. A detector bin that
    counts no photon is read as one photon (the usual clamp; it caps ``p`` at ``log(i0)``
    instead of infinity). ``i0`` is the unattenuated count per detector bin; ``None`` or 0 means
    no noise and returns ``y`` itself. ``generator`` must live on ``y``'s device.

    The noise is added as ``y + (y_noisy - y).detach()``: gradients pass straight through to
    ``y``, i.e. the noise realisation is treated as an additive perturbation independent of y.
    """
    if not i0:
        return y
    if i0 < 0:
        raise ValueError(f"i0 must be positive, got {i0}")
    scale = line_integral_scale(pixel_mm, mu_water_per_mm)
    with torch.no_grad():
        counts = torch.poisson(i0 * torch.exp(-y * scale), generator=generator)
        noisy = -torch.log(counts.clamp_min(1.0) / i0) / scale
    return y + (noisy - y).detach()


def expected_noise_std(
    y: torch.Tensor, i0: float, pixel_mm: float, mu_water_per_mm: float = MU_WATER_PER_MM
) -> torch.Tensor:
    """Delta-method standard deviation of the noisy sinogram: ``1 / (scale sqrt(i0 e^-p))``."""
    scale = line_integral_scale(pixel_mm, mu_water_per_mm)
    return 1.0 / (scale * torch.sqrt(i0 * torch.exp(-y * scale)))


__all__ = [
    "MU_WATER_PER_MM",
    "add_poisson_noise",
    "expected_noise_std",
    "hu_to_relative",
    "line_integral_scale",
    "relative_to_hu",
]
