"""The Jacobian start: top right singular vector by power steps, signed to raise the error."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctrobust.attacks.jacobian_start import (
    jacobian_start,
    pga_from_jacobian,
    top_right_singular_vector,
)


class Quadratic(nn.Module):
    """f(y) = M y + 0.1 (M y)^2 elementwise: a non-linear map whose Jacobian at y is known."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = matrix

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = y.flatten(1) @ self.matrix.T
        return (z + 0.1 * z**2)[:, None]


def test_power_steps_find_the_jacobians_top_singular_vector_per_sample():
    gen = np.random.default_rng(0)
    matrix = torch.from_numpy(gen.standard_normal((30, 20)))
    f = Quadratic(matrix)
    y = torch.from_numpy(gen.standard_normal((3, 1, 20)))
    v = top_right_singular_vector(f, y, steps=100)
    for i in range(3):
        z = matrix @ y[i, 0]
        jac = (1 + 0.2 * z)[:, None] * matrix  # d/dy of z + 0.1 z^2
        top = torch.linalg.svd(jac).Vh[0]
        assert abs(float(v[i, 0] @ top)) > 1 - 1e-6


def test_start_is_signed_to_raise_the_error_and_pga_from_it_stays_in_the_ball():
    gen = np.random.default_rng(1)
    f = Quadratic(torch.from_numpy(gen.standard_normal((30, 20))))
    y = torch.from_numpy(gen.standard_normal((4, 1, 20)))
    x = torch.from_numpy(gen.standard_normal((4, 1, 30)))
    radius = torch.full((4,), 0.5, dtype=torch.float64)
    start = jacobian_start(f, y, x, radius, steps=20)
    torch.testing.assert_close(start.flatten(1).norm(dim=1), radius)
    with torch.no_grad():
        chosen = (f(y + start) - x).flatten(1).norm(dim=1)
        flipped = (f(y - start) - x).flatten(1).norm(dim=1)
    assert bool((chosen >= flipped).all())
    result = pga_from_jacobian(f, y, x, 0.5, steps=20, n_iter=10)
    assert bool((result.error >= chosen - 1e-12).all())  # keep-best never loses the start
    assert bool((result.delta.flatten(1).norm(dim=1) <= 0.5 * (1 + 1e-9)).all())
