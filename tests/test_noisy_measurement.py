"""NoisyMeasurement: one fixed low-dose realisation per view count, of the dose model's size."""

from __future__ import annotations

import torch

from ctrobust.instability.measurement import NoisyMeasurement
from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.units import MU_WATER_PER_MM, expected_noise_std


def _disc(n: int, radius: float) -> torch.Tensor:
    grid = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    return (xx**2 + yy**2 < radius**2).float()[None, None]


def test_noise_norm_follows_the_dose_model_and_is_fixed_per_view_count():
    """||noise||^2 against sum sigma^2 of the delta-method model (about 9 000 detector bins: the
    ratio's standard deviation is sqrt(2 / 9000) = 1.5 %), and one realisation per view count
    whatever image is measured."""
    n, px, i0 = 64, 2.0, 1e4
    x_ref = _disc(n, 0.8)
    measure = NoisyMeasurement(x_ref, torch.tensor([px]), i0, MU_WATER_PER_MM, seed=3)
    op = ParallelBeam2D(n, 96, backend="matrix")
    detail = x_ref + 0.2 * _disc(n, 0.2)
    noise = measure(op, x_ref) - op.A(x_ref)
    again = measure(op, detail) - op.A(detail)
    torch.testing.assert_close(again, noise, atol=1e-4, rtol=0)  # the same realisation
    sigma = expected_noise_std(op.A(x_ref), i0, px)
    ratio = float(noise.pow(2).sum() / sigma.pow(2).sum())
    print(f"\n||noise||^2 / sum sigma^2 = {ratio:.4f} over {noise.numel()} bins")
    assert abs(ratio - 1) < 0.08  # five standard deviations
    other = ParallelBeam2D(n, 48, backend="matrix")
    other_noise = measure(other, x_ref) - other.A(x_ref)
    assert other_noise.shape[2] == 48
    assert not torch.allclose(other_noise[0, 0, :, :], noise[0, 0, ::2, :], atol=1e-3)
    quieter = NoisyMeasurement(x_ref, torch.tensor([px]), 100 * i0, MU_WATER_PER_MM, seed=3)
    ratio_norm = float((quieter(op, x_ref) - op.A(x_ref)).norm() / noise.norm())
    assert abs(ratio_norm - 0.1) < 0.01  # noise std falls as 1 / sqrt(i0)


def test_without_dose_the_measurement_is_exact():
    op = ParallelBeam2D(32, 24, backend="matrix")
    x = _disc(32, 0.6)
    measure = NoisyMeasurement(x, torch.tensor([1.0]), None, MU_WATER_PER_MM, seed=0)
    torch.testing.assert_close(measure(op, x), op.A(x))
