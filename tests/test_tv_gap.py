"""TV's stopping certificate, an exact TV solution, batching, and the view-count rule."""

from __future__ import annotations

import pytest
import torch

from ctrobust.instability import shepp_logan_head, tv_objective, tv_reconstruct
from ctrobust.metrics import psnr_per_slice
from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.units import add_poisson_noise
from ctrobust.reconstructors import TV


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Identity:
    """A = I on n x n images: TV denoising, whose step-edge solution is known in closed form."""

    def __init__(self, n: int):
        self.n = n

    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y

    def norm(self):
        return 1.0


def test_tv_reaches_the_exact_solution_of_a_step_and_its_gap_certifies_it():
    # rows identical, columns: a on the left half, b on the right. Per row the problem is
    # min (n/2)(u - a)^2 / 2 + (n/2)(v - b)^2 / 2 + lam |v - u|, solved by u = a + 2 lam / n,
    # v = b - 2 lam / n while b - a > 4 lam / n.
    n, a, b, lam = 16, 0.2, 1.4, 2.0
    op = Identity(n)
    y = torch.full((1, 1, n, n), a, dtype=torch.float64)
    y[..., n // 2 :] = b
    exact = torch.full_like(y, a + 2 * lam / n)
    exact[..., n // 2 :] = b - 2 * lam / n
    x, info = tv_reconstruct(op, y, lam, n_iter_max=20000, tol=1e-7, step_ratio=1.0)
    assert bool(info.converged.all()), info.gap
    assert float(info.gap[0]) < 1e-7
    assert float((x - exact).abs().max()) < 1e-3
    p_x = float(tv_objective(op, x, y, lam)[0])
    p_star = float(tv_objective(op, exact, y, lam)[0])
    assert 0.0 <= p_x - p_star <= float(info.gap[0]) * p_x + 1e-12


def test_gap_at_the_returned_point_bounds_the_suboptimality():
    op = ParallelBeam2D(32, 24, dtype=torch.float64)
    x0 = shepp_logan_head(32, torch.float64)
    gen = torch.Generator().manual_seed(0)
    y = add_poisson_noise(op.A(x0), 1e4, 1.0, gen)
    x, info = tv_reconstruct(op, y, 1.0, n_iter_max=3000, tol=1e-2)
    assert bool(info.converged.all()) and float(info.gap[0]) < 1e-2
    assert not bool(info.box_active.any())
    tight, tight_info = tv_reconstruct(op, y, 1.0, n_iter_max=20000, tol=1e-5)
    p_x = float(tv_objective(op, x, y, 1.0)[0])
    p_tight = float(tv_objective(op, tight, y, 1.0)[0])
    # the minimum is at least the tight point's objective minus its own certificate
    lower = p_tight * (1 - float(tight_info.gap[0]))
    assert p_x - lower <= float(info.gap[0]) * p_x
    assert info.iterations < tight_info.iterations


def test_batched_tv_equals_tv_slice_by_slice():
    op = ParallelBeam2D(32, 24)
    x = torch.cat([shepp_logan_head(32), shepp_logan_head(32).flip(-1) * 0.9])
    y = add_poisson_noise(op.A(x), 1e4, 1.0, torch.Generator().manual_seed(1))
    lam = torch.tensor([0.5, 3.0])
    both, info = tv_reconstruct(op, y, lam, n_iter_max=2000, tol=1e-2)
    for i in range(2):
        alone, alone_info = tv_reconstruct(op, y[i : i + 1], float(lam[i]), 2000, 1e-2)
        assert int(info.sample_iterations[i]) == alone_info.iterations
        assert torch.allclose(both[i : i + 1], alone, atol=1e-5)
    assert int(info.sample_iterations[0]) != int(info.sample_iterations[1])


def test_tv_keeps_its_weight_at_every_view_count_and_improves_with_views_against_the_source():
    # the noise model puts i0 photons in every bin of every view, so the per-entry variance,
    # and with it the MAP weight, does not depend on the view count
    n = 32
    x = shepp_logan_head(n)
    tv = TV(ParallelBeam2D(n, 24), 1.0, n_iter=2000, tol=1e-2)
    psnr = []
    for views in (12, 24, 48):
        op = ParallelBeam2D(n, views)
        other = tv.for_operator(op)
        assert torch.equal(other.lam, tv.lam)
        gen = torch.Generator().manual_seed(views)
        y = add_poisson_noise(op.A(x), 1e4, 8.0, gen)
        with torch.no_grad():
            psnr.append(float(psnr_per_slice(other(y), x)))
    assert psnr[0] < psnr[1] < psnr[2], psnr


def test_tv_with_gap_stop_is_differentiable():
    op = ParallelBeam2D(16, 12)
    y = op.A(shepp_logan_head(16)).requires_grad_(True)
    x = TV(op, 0.5, n_iter=500, tol=1e-2)(y)
    x.pow(2).sum().backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all())
    assert float(y.grad.abs().sum()) > 0


def test_noise_variance_matches_the_poisson_draws_and_does_not_depend_on_the_views():
    from ctrobust.instability.tv_weight import noise_variance

    x = shepp_logan_head(32)
    pixel = torch.tensor([8.0])
    var = {}
    for views in (24, 72):
        op = ParallelBeam2D(32, views)
        clean = op.A(x)
        gen = torch.Generator().manual_seed(views)
        draws = torch.stack([add_poisson_noise(clean, 1e4, 8.0, gen) for _ in range(200)])
        empirical = float((draws - clean).pow(2).mean())
        var[views] = float(noise_variance(clean, pixel, 1e4, 0.01937)[0])
        assert abs(var[views] - empirical) < 0.05 * empirical, (var[views], empirical)
    assert abs(var[24] - var[72]) < 0.05 * var[72], var


def test_tv_tiles_per_slice_weights_over_a_batch_of_copies():
    op = ParallelBeam2D(16, 12)
    x = torch.cat([shepp_logan_head(16), shepp_logan_head(16).flip(-1)])
    y = op.A(x)
    tv = TV(op, torch.tensor([0.2, 5.0]), n_iter=30, tol=0)
    assert torch.equal(tv.weights_for(y.repeat(3, 1, 1, 1)), torch.tensor([0.2, 5.0] * 3))
    with torch.no_grad():
        both = tv(y.repeat(2, 1, 1, 1))
        second = TV(op, 5.0, n_iter=30, tol=0)(y[1:])
    assert torch.allclose(both[3:], second, atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple"):
        tv.weights_for(y[:1])


def test_gradient_through_samples_that_stop_at_different_iterations():
    """Once one sample has stopped, the others step alone (compacted batch): the gradient of
    the whole batch still matches finite differences of the map that is reported."""
    op = ParallelBeam2D(16, 12, dtype=torch.float64)
    x = shepp_logan_head(16, torch.float64).repeat(2, 1, 1, 1)
    y = op.A(x) + 0.01 * torch.randn(
        2, 1, 12, op.n_det, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    lam = torch.tensor([0.05, 2.0], dtype=torch.float64)

    def f(yy):
        return tv_reconstruct(op, yy, lam, n_iter_max=400, tol=1e-3)

    batch, info = f(y)
    assert int(info.sample_iterations[0]) != int(info.sample_iterations[1])
    for row in range(2):
        alone, _ = tv_reconstruct(
            op, y[row : row + 1], lam[row : row + 1], n_iter_max=400, tol=1e-3
        )
        assert torch.allclose(batch[row : row + 1], alone, rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(6)
    weights = torch.randn(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    direction = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    yy = y.clone().requires_grad_(True)
    (f(yy)[0] * weights).sum().backward()
    analytic = float((yy.grad * direction).sum())
    h = 1e-8  # small enough that no sample's stopping iteration moves (the map is piecewise smooth)
    plus = float((f(y + h * direction)[0] * weights).sum())
    minus = float((f(y - h * direction)[0] * weights).sum())
    numeric = (plus - minus) / (2 * h)
    assert abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)), (analytic, numeric)


class CountingOperator:
    """An operator that records the batch size of every forward projection it applies."""

    def __init__(self, op: ParallelBeam2D):
        self.op, self.batches = op, []

    def __getattr__(self, name):
        return getattr(self.op, name)

    def A(self, x):
        self.batches.append(x.shape[0])
        return self.op.A(x)


def test_a_converged_sample_leaves_the_batch_the_operator_is_applied_to():
    op = CountingOperator(ParallelBeam2D(32, 24))
    x = torch.cat([shepp_logan_head(32), shepp_logan_head(32).flip(-1) * 0.9])
    y = add_poisson_noise(op.A(x), 1e4, 1.0, torch.Generator().manual_seed(1))
    op.batches.clear()
    _, info = tv_reconstruct(op, y, torch.tensor([0.5, 3.0]), n_iter_max=2000, tol=1e-2)
    first, last = sorted(int(v) for v in info.sample_iterations)
    # one projection of the start point, then one per iteration of the samples still running
    assert op.batches == [2] * (1 + first) + [1] * (last - first)
