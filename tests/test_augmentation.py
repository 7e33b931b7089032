"""Augmentation physics: every symmetry used in training commutes with x -> fbp(A x)."""

from __future__ import annotations

import pytest
import torch

from ctrobust.physics import ParallelBeam2D
from ctrobust.training.supervised import (
    apply_symmetry,
    random_symmetry,
    view_symmetries,
)

# The system matrix is stored in float32, so a float64 round trip is exact to ~1e-5 relative.
EXACT = 1e-4


def _commutation_error(op: ParallelBeam2D, symmetry) -> float:
    """||g(fbp(A x)) - fbp(A g(x))|| / ||fbp(A x)|| for a random image x."""
    x = torch.rand(
        2, 1, op.n, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    base = op.fbp(op.A(x))
    moved = op.fbp(op.A(apply_symmetry(x, symmetry)))
    return float((apply_symmetry(base, symmetry) - moved).norm() / base.norm())


@pytest.mark.parametrize("n_views", [15, 16, 143])
def test_every_allowed_symmetry_commutes_with_fbp_of_a(n_views):
    op = ParallelBeam2D(32, n_views, dtype=torch.float64)
    symmetries = view_symmetries(n_views)
    assert len(symmetries) == (8 if n_views % 2 == 0 else 4)
    for symmetry in symmetries:
        assert _commutation_error(op, symmetry) < EXACT, symmetry


def test_quarter_turn_at_143_views_does_not_commute():
    """The old augmentation: pi/2 is 71.5 view steps, so rot90 shifts the view set by half a
    step; the test above would catch it if view_symmetries let it through."""
    op = ParallelBeam2D(32, 143, dtype=torch.float64)
    assert (1, False) not in view_symmetries(143)
    assert _commutation_error(op, (1, False)) > 10 * EXACT


def test_symmetries_are_the_intersection_over_view_counts():
    assert len(view_symmetries(144, 1000)) == 8
    assert len(view_symmetries(143, 1000)) == 4
    with pytest.raises(ValueError):
        view_symmetries(0)


def test_random_symmetry_moves_input_and_target_alike():
    a = torch.arange(16.0).reshape(1, 1, 4, 4)
    symmetries = view_symmetries(143)
    for seed in range(8):
        out_a, out_b = random_symmetry(
            a, a.clone(), symmetries=symmetries, generator=torch.Generator().manual_seed(seed)
        )
        assert torch.equal(out_a, out_b)
        assert any(torch.equal(out_a, apply_symmetry(a, s)) for s in symmetries)
