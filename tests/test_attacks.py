"""Attacks: PGA against known linear worst cases, random and Gaussian controls, Antun's
image-domain ascent, rho-hat and the ignite engine."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.attacks import (
    AttackResult,
    concat_results,
    create_attack_engine,
    gaussian_control,
    image_domain_ascent,
    measurement_pga,
    random_perturbation_baseline,
    rho_hat,
    run_attack_over_loader,
    slice_quality,
)
from ctrobust.metrics import DATA_RANGE
from ctrobust.physics import ParallelBeam2D

M, N = 30, 60


class LinearReconstructor(nn.Module):
    """f(y) = B y for y shaped (B,1,1,m), images shaped (B,1,1,n)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (y.flatten(1) @ self.matrix.T).reshape(y.shape[0], 1, 1, -1)


@pytest.fixture(scope="module")
def linear_case():
    """Random A (30 x 60), B = pinv(A), x = B A z in A's row space, so f(y) - x = B delta."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(M, N, generator=gen, dtype=torch.float64) / math.sqrt(M)
    b = torch.linalg.pinv(a)
    z = torch.randn(6, N, generator=gen, dtype=torch.float64)
    x = (z @ a.T @ b.T).reshape(6, 1, 1, N)
    y = (x.flatten(1) @ a.T).reshape(6, 1, 1, M)
    return LinearReconstructor(b), y, x, torch.linalg.svdvals(b)


class TinyFBPNet(nn.Module):
    """FBPConvNet in miniature: f(y) = z + C(z), z = fbp(y), C a 3-layer ReLU conv net."""

    def __init__(self, op: ParallelBeam2D) -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 1, 3, padding=1),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = self.op.fbp(y)
        return z + self.conv(z)


@pytest.fixture(scope="module")
def fbp_case():
    """32 x 32 disc-and-square phantoms, 16 views, and a seeded TinyFBPNet in eval mode."""
    torch.manual_seed(0)
    op = ParallelBeam2D(32, 16)
    net = TinyFBPNet(op).eval()
    grid = torch.linspace(-1, 1, 32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disc = (xx**2 + yy**2 < 0.7).double()
    square = ((xx - 0.2).abs() < 0.15) & ((yy + 0.1).abs() < 0.15)
    x = torch.stack([disc, disc + 0.5 * square.double()])[:, None].float()
    return net, op, op.A(x), x


def test_pga_reaches_linear_worst_case_inside_the_ball(linear_case):
    f, y, x, sv = linear_case
    eps = 0.1
    result = measurement_pga(f, y, x, eps, n_iter=30)
    ratio = result.error / (eps * sv[0])
    print(f"\nPGA / (eps ||B||_2) per sample: {[round(v, 5) for v in ratio.tolist()]}")
    assert bool((ratio >= 0.99).all())
    assert bool((result.delta.flatten(1).norm(dim=1) <= eps * (1 + 1e-6)).all())
    assert torch.allclose(result.error, (f(y + result.delta) - x).flatten(1).norm(dim=1))
    assert result.clean_error.max() < 1e-10  # f(y) == x: the start has a zero gradient


def test_pga_relative_eps(linear_case):
    f, y, x, sv = linear_case
    result = measurement_pga(f, y, x, 0.02, relative=True, n_iter=30)
    radius = 0.02 * y.flatten(1).norm(dim=1)
    assert torch.allclose(result.eps, radius)
    assert bool((result.delta.flatten(1).norm(dim=1) <= radius * (1 + 1e-6)).all())
    assert bool((result.error >= 0.99 * radius * sv[0]).all())


def test_pga_float32_stays_in_ball_and_leaves_parameters_alone(linear_case):
    f, y, x, _ = linear_case
    f32 = LinearReconstructor(f.matrix.detach().float())
    result = measurement_pga(f32, y.float(), x.float(), 0.1, n_iter=10, random_start=True)
    assert bool((result.delta.flatten(1).norm(dim=1) <= 0.1 * (1 + 1e-6)).all())
    assert f32.matrix.grad is None


def test_pga_restarts_early_stop_and_trace(linear_case):
    f, y, x, sv = linear_case
    full = measurement_pga(f, y, x, 0.1, n_iter=40, restarts=1, record_trace=True)
    assert full.trace.shape == (6, 2 * 41)
    assert bool((full.iterations == 80).all())
    stopped = measurement_pga(f, y, x, 0.1, n_iter=200, tol=1e-6, patience=5)
    print(f"\nearly stop after {stopped.iterations[0].item()} of 200 iterations")
    assert stopped.iterations[0] < 200
    assert bool((stopped.error >= 0.99 * 0.1 * sv[0]).all())


def test_pga_names_the_call_of_f_that_gave_each_reported_point(fbp_case):
    net, _, y, x = fbp_case
    outputs = []

    def recorded(sinograms):
        out = net(sinograms)
        outputs.append(out.detach())
        return out

    result = measurement_pga(recorded, y, x, 0.05, relative=True, n_iter=6, restarts=1)
    assert len(outputs) == 1 + 2 * 7  # the clean call, then n_iter + 1 per start
    assert bool((result.best_evaluation > 0).all())  # the attack beat the clean error
    for i, k in enumerate(result.best_evaluation.tolist()):
        assert torch.equal(outputs[k][i], result.reconstruction[i])


def test_random_baseline_is_much_weaker_on_the_linear_case(linear_case):
    f, y, x, sv = linear_case
    eps = 0.1
    pga = measurement_pga(f, y, x, eps, n_iter=30)
    rnd = random_perturbation_baseline(f, y, x, eps, n_draws=64, generator=torch.Generator())
    ratio = (pga.error / rnd.mean_error).mean().item()
    # a Gaussian direction sees the mean squared singular value of B, PGA the largest one
    expected = (sv[0] / sv.pow(2).mean().sqrt()).item()
    print(f"\nlinear: PGA / random = {ratio:.3f} (theory sigma_max / rms sigma = {expected:.3f})")
    assert ratio > 2.0
    assert ratio == pytest.approx(expected, rel=0.1)
    assert bool((rnd.max_error <= pga.error).all())
    assert torch.allclose(rnd.eps, torch.full((6,), eps, dtype=torch.float64))


def _linearised_worst_case(f: nn.Module, y: torch.Tensor, n_iter: int = 40) -> torch.Tensor:
    """sigma_max of the Jacobian J of f at y, per sample, by power iteration on J^T J.

    J^T w is a backward pass; J v is the derivative of u -> J^T u along v (double backward)."""
    y = y.clone().requires_grad_(True)
    out = f(y)
    u = torch.zeros_like(out, requires_grad=True)
    (jtu,) = torch.autograd.grad(out, y, u, create_graph=True)

    def jac(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(jtu, u, v, retain_graph=True)[0]

    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    for _ in range(n_iter):
        w = torch.autograd.grad(out, y, jac(v), retain_graph=True)[0]
        v = w / w.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    return jac(v).flatten(1).norm(dim=1).detach()


def test_pga_far_stronger_than_noise_on_an_fbp_network(fbp_case):
    net, _, y, x = fbp_case
    with torch.no_grad():
        reference = net(y)  # measure ||f(y + delta) - f(y)||: the instability itself
    eps = 0.01
    pga = measurement_pga(net, y, reference, eps, relative=True, n_iter=20)
    rnd = random_perturbation_baseline(net, y, reference, eps, relative=True, n_draws=8)
    ratio = (pga.error / rnd.mean_error).min().item()
    linear = pga.eps * _linearised_worst_case(net, y)
    print(
        f"\nFBP net: PGA / random (same norm) = {ratio:.2f}; "
        f"PGA / (eps sigma_max(J)) = {(pga.error / linear).tolist()}"
    )
    assert ratio > 2.5
    assert bool((pga.error >= 0.95 * linear).all())
    worse = measurement_pga(net, y, x, eps, relative=True, n_iter=20)
    assert bool((worse.error > worse.clean_error).all())


def test_image_domain_ascent_records_growing_perturbations(fbp_case):
    net, op, y, x = fbp_case
    result = image_domain_ascent(net, op.A, y, x, lam=0.1, step=0.01, n_iter=100)
    print(f"\nAntun iterates: norms {result.norms.tolist()}, errors {result.errors.tolist()}")
    assert bool(result.reached.all())
    assert bool((result.norms[:, 1:] > result.norms[:, :-1]).all())
    assert bool((result.errors[:, 1:] > result.errors[:, :-1]).all())
    assert bool((result.errors[:, 0] > result.clean_error).all())
    levels = torch.tensor([0.01, 0.02, 0.04]) * x.flatten(1).norm(dim=1)[:, None]
    assert bool((result.norms >= levels).all())
    r = result.perturbations
    assert torch.allclose(r.flatten(2).norm(dim=2), result.norms)
    again = net(y + op.A(r[:, 2])).detach()
    assert torch.allclose(again, result.reconstructions[:, 2], atol=1e-5)


def test_image_domain_ascent_fixed_iterations_and_validation(fbp_case):
    net, op, y, x = fbp_case
    result = image_domain_ascent(
        net, op.A, y, x, lam=0.1, step=0.003, n_iter=12, record_at=(3, 6, 12)
    )
    assert result.iterations.tolist() == [[3, 6, 12]] * 2
    assert result.norm_trace.shape == (2, 13)
    assert torch.allclose(result.norms, result.norm_trace[:, [3, 6, 12]])
    with pytest.raises(ValueError, match="strictly increasing"):
        image_domain_ascent(net, op.A, y, x, lam=0.1, step=0.01, n_iter=12, record_at=(3, 3, 6))


def test_image_domain_ascent_on_a_stable_map_reaches_nothing(linear_case):
    f, y, x, _ = linear_case
    a = torch.linalg.pinv(f.matrix.detach())  # f(y + A r) - x = B A r: gain 1 < sqrt(lam)
    forward = lambda r: (r.flatten(1) @ a.T).reshape(r.shape[0], 1, 1, -1)  # noqa: E731
    result = image_domain_ascent(f, forward, y, x, lam=4.0, step=0.1, n_iter=30)
    assert not bool(result.reached.any())
    assert bool(torch.isnan(result.norms).all())
    assert bool((result.iterations == -1).all())


@pytest.mark.parametrize("space", ["measurement", "image"])
def test_gaussian_control_is_reproducible_and_keeps_the_artefact(fbp_case, space):
    net, op, y, x = fbp_case
    ascent = image_domain_ascent(net, op.A, y, x, lam=0.1, step=0.01, n_iter=100)
    r1 = ascent.perturbations[:, 0]

    def control(seed: int):
        gen = torch.Generator().manual_seed(seed)
        return gaussian_control(r1, net, y, op.A, x, space=space, generator=gen)

    first, second, other = control(5), control(5), control(6)
    assert first.space == space
    assert torch.equal(first.noise, second.noise)
    assert torch.equal(first.error_with, second.error_with)
    assert not torch.equal(first.noise, other.noise)
    assert torch.allclose(first.noise.flatten(1).norm(dim=1), 0.25 * ascent.norms[:, 0])
    assert torch.allclose(first.error_without, ascent.errors[:, 0], atol=1e-5)
    gain = first.error_with - ascent.clean_error
    noise_gain = first.error_noise_only - ascent.clean_error
    print(
        f"\nGaussian control: error gain with r1+e {gain.tolist()}, e alone {noise_gain.tolist()}"
    )
    assert bool((gain > 0.8 * (first.error_without - ascent.clean_error)).all())
    assert bool((gain > 5 * noise_gain.abs()).all())


def _high_frequency_share(images: torch.Tensor) -> float:
    """Share of the spectral energy outside the central half of each axis' frequencies."""
    power = torch.fft.fftshift(torch.fft.fft2(images.double()).abs() ** 2, dim=(-2, -1))
    n = images.shape[-1]
    low = power[..., n // 4 : 3 * n // 4, n // 4 : 3 * n // 4].sum()
    return float(1 - low / power.sum())


def test_measurement_space_control_is_the_back_projection_of_sinogram_noise(fbp_case):
    """Antun Fig. 2: v = A^T e with e ~ N(0, I) on the sinogram, rescaled to ||r1|| / 4; for
    CT that v is low-pass, unlike white pixel noise of the same norm."""
    net, op, y, x = fbp_case
    r1 = 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    by_autograd = gaussian_control(r1, net, y, op.A, x, generator=torch.Generator().manual_seed(3))
    explicit = gaussian_control(
        r1, net, y, op.A, x, adjoint_op=op.A_adjoint, generator=torch.Generator().manual_seed(3)
    )
    e = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    expected = op.A_adjoint(e)
    expected = (
        expected
        * (0.25 * r1.flatten(1).norm(dim=1) / expected.flatten(1).norm(dim=1))[:, None, None, None]
    )
    assert torch.allclose(by_autograd.noise, expected, rtol=1e-5, atol=1e-7)
    assert torch.allclose(explicit.noise, expected, rtol=1e-5, atol=1e-7)
    white = gaussian_control(
        r1, net, y, op.A, x, space="image", generator=torch.Generator().manual_seed(3)
    )
    assert torch.allclose(white.noise.flatten(1).norm(dim=1), expected.flatten(1).norm(dim=1))
    share_back, share_white = _high_frequency_share(expected), _high_frequency_share(white.noise)
    print(f"\nhigh-frequency share: A^T e {share_back:.3f}, white {share_white:.3f}")
    assert share_back < 0.5 * share_white
    with pytest.raises(ValueError, match="space"):
        gaussian_control(r1, net, y, op.A, x, space="sinogram")


def test_rho_hat_and_slice_quality(rng):
    errors = torch.tensor([1.0, 2.0, 4.0, 5.0])
    rho = rho_hat(errors)
    assert rho.value == pytest.approx(3.0)
    assert rho.stderr == pytest.approx(errors.double().std().item() / 2)
    assert torch.equal(rho.per_slice, errors.double())
    truth = torch.rand(3, 1, 16, 16, generator=rng)
    quality = slice_quality(truth + 0.01, truth)
    assert quality.data_range == DATA_RANGE
    assert torch.allclose(quality.psnr, torch.full((3,), 10 * math.log10(DATA_RANGE**2 / 1e-4)))
    assert bool((quality.ssim > 0.99).all())
    with pytest.raises(ValueError):
        rho_hat(torch.tensor([]))


def test_engine_over_loader_matches_direct_calls(linear_case):
    f, y, x, _ = linear_case
    x = x + 0.1  # leave A's row space: a non-zero gradient at delta = 0, no random fallback
    attack = functools.partial(measurement_pga, eps=0.05, relative=True, n_iter=15)
    loader = DataLoader(TensorDataset(y, x), batch_size=4)
    engine = create_attack_engine(f, attack, torch.device("cpu"), progress=False)
    collected = run_attack_over_loader(engine, loader)
    direct = attack(f, y, x)
    assert isinstance(collected, AttackResult)
    assert len(engine.state.attack_results) == 2
    for name in ("delta", "error", "clean_error", "eps", "reconstruction", "iterations"):
        assert torch.allclose(getattr(collected, name), getattr(direct, name)), name
    assert collected.trace is None
    dict_loader = [{"y": y[:3], "x": x[:3]}, {"y": y[3:], "x": x[3:]}]
    baseline = functools.partial(random_perturbation_baseline, eps=0.05, n_draws=2)
    engine = create_attack_engine(f, baseline, "cpu", progress=True)
    assert run_attack_over_loader(engine, dict_loader).errors.shape == (6, 2)


def test_concat_results_pads_traces_of_different_length(linear_case):
    f, y, x, _ = linear_case
    short = measurement_pga(f, y[:2], x[:2], 0.1, n_iter=3, record_trace=True)
    long = measurement_pga(f, y[2:], x[2:], 0.1, n_iter=5, record_trace=True)
    joined = concat_results([short, long])
    assert joined.trace.shape == (6, 6)
    assert bool(torch.isnan(joined.trace[:2, 4:]).all())
    assert torch.equal(joined.trace[2:], long.trace)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pga_on_cuda_matches_cpu(linear_case):
    f, y, x, _ = linear_case
    cpu = measurement_pga(f, y, x, 0.1, n_iter=10, random_start=True)
    device = torch.device("cuda")
    gpu = measurement_pga(
        LinearReconstructor(f.matrix.detach()).to(device),
        y.to(device),
        x.to(device),
        0.1,
        n_iter=10,
        random_start=True,
    )
    assert gpu.delta.device.type == "cuda"
    assert torch.allclose(gpu.error.cpu(), cpu.error, rtol=1e-6)
