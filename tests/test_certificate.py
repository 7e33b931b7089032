"""The exact linear certificate against an independent dense solve, and PGA against it.

The brute force is the Lagrangian dual of the trust-region subproblem, evaluated with dense
linear solves (no eigen-decomposition, no Krylov space):
max_{||d|| <= eps} ||r + M d||^2
    = min_{lam > lambda_max} ||r||^2 + lam eps^2 + b^T (lam I - M^T M)^{-1} b,   b = M^T r
(strong duality holds for this problem).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from ctrobust.attacks import measurement_pga
from ctrobust.attacks.certificate import linear_certificate, top_spectrum, trust_region_max
from ctrobust.config import AttackConfig
from ctrobust.instability.sirt import unrolled_sirt
from ctrobust.physics import ParallelBeam2D


def dual_worst_case(matrix: np.ndarray, r: np.ndarray, eps: float) -> float:
    """max ||r + matrix d|| over ||d|| <= eps by a bounded 1-D minimisation of the dual."""
    normal, b = matrix.T @ matrix, matrix.T @ r
    lam_max = np.linalg.norm(matrix, 2) ** 2
    eye = np.eye(len(b))

    def dual(lam: float) -> float:
        return r @ r + lam * eps**2 + b @ np.linalg.solve(lam * eye - normal, b)

    hi = lam_max + np.linalg.norm(b) / eps + 1.0
    lo = lam_max * (1 + 1e-13)
    best = minimize_scalar(dual, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14 * hi})
    return float(np.sqrt(min(best.fun, dual(lo))))


def dense(f, shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of a linear map on (B, *shape), built column by column."""
    n_in = int(np.prod(shape))
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape)
    with torch.no_grad():
        return f(eye).reshape(n_in, -1).numpy().T


def check_against_dual(f, centre: torch.Tensor, x: torch.Tensor, eps: list[float], k: int):
    """Lower and upper bounds of the certificate within 1e-6 of the dual solve, d feasible."""
    matrix = dense(f, tuple(centre.shape[1:]))
    spectrum = top_spectrum(f, centre[:1], k=k)
    for e, cert in zip(
        eps, linear_certificate(f, centre, x, eps, spectrum, relative=True), strict=True
    ):
        assert bool((cert.delta.flatten(1).norm(dim=1) <= cert.eps * (1 + 1e-12)).all())
        for i in range(len(centre)):
            r = (f(centre[i : i + 1]) - x[i : i + 1]).reshape(-1).detach().numpy()
            exact = dual_worst_case(matrix, r, float(cert.eps[i]))
            lower, upper = float(cert.lower[i]), float(cert.upper[i])
            print(f"eps {e}: lower {lower:.10f} dual {exact:.10f} upper {upper:.10f}")
            assert lower == pytest.approx(exact, rel=1e-6)
            assert upper == pytest.approx(exact, rel=1e-6)
            assert lower <= upper * (1 + 1e-12)


@pytest.fixture(scope="module")
def tiny_fbp():
    """16 x 16 FBP at 12 views in float64, ball centres A x0 and references x."""
    op = ParallelBeam2D(16, 12, dtype=torch.float64, backend="matrix")
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    x = torch.rand(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    return op, op.A(x0), x


def test_fbp_certificate_equals_dense_dual_solve(tiny_fbp):
    op, centre, x = tiny_fbp
    check_against_dual(op.fbp, centre, x, [0.005, 0.05, 0.5], k=12)


def test_linear_sirt_certificate_equals_dense_dual_solve(tiny_fbp):
    op, centre, x = tiny_fbp
    check_against_dual(unrolled_sirt(op, n_iter=5), centre[:2], x[:2], [0.01, 0.2], k=8)


class MatrixMap(torch.nn.Module):
    """d -> matrix d on (B, 1, n) inputs."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = matrix

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return (d.flatten(1) @ self.matrix.T)[:, None]


def test_clustered_singular_values_and_the_hard_case():
    """Top singular values 1, 1 - 1e-4, 1 - 2e-4: the slow case for ascent. The second
    residual is orthogonal to the top singular vectors' images (the hard case)."""
    gen = np.random.default_rng(3)
    u, _ = np.linalg.qr(gen.standard_normal((50, 50)))
    v, _ = np.linalg.qr(gen.standard_normal((40, 40)))
    sv = np.concatenate([[1.0, 1 - 1e-4, 1 - 2e-4], np.linspace(0.9, 0.05, 37)])
    matrix = (u[:, :40] * sv) @ v.T
    f = MatrixMap(torch.from_numpy(matrix))
    x = torch.from_numpy(gen.standard_normal((2, 1, 50)))
    x[1, 0] -= torch.from_numpy(u[:, :3] @ (u[:, :3].T @ x[1, 0].numpy()))
    centre = torch.from_numpy(gen.standard_normal((2, 1, 40)))
    centre[1] = 0.0  # r = -x: no component along the top three singular directions
    matrix_t = dense(f, (1, 40))
    spectrum = top_spectrum(f, centre[:1], k=6)
    for eps in (0.1, 3.0):
        cert = linear_certificate(f, centre, x, [eps], spectrum)[0]
        for i in range(2):
            r = (f(centre[i : i + 1]) - x[i : i + 1]).reshape(-1).numpy()
            exact = dual_worst_case(matrix_t, r, eps)
            print(f"eps {eps} sample {i}: lower {float(cert.lower[i])} dual {exact}")
            assert float(cert.lower[i]) == pytest.approx(exact, rel=1e-6)
            assert float(cert.upper[i]) == pytest.approx(exact, rel=1e-6)


def test_trust_region_max_matches_a_dense_grid_in_two_dimensions():
    """max c + 2 beta.a + sum gamma a^2 on the circle, by 200 000 angles."""
    angles = np.linspace(0, 2 * np.pi, 200_000)
    for gamma, beta in [
        ([2.0, 1.0], [0.3, -0.7]),
        ([1.0, 1.0], [0.0, 0.5]),
        ([3.0, 1.0], [0.0, 0.1]),
    ]:
        value, a, _ = trust_region_max(np.array(gamma), np.array(beta), 1.0, 0.8)
        circle = 0.8 * np.stack([np.cos(angles), np.sin(angles)])
        grid = 1.0 + 2 * np.array(beta) @ circle + np.array(gamma) @ circle**2
        assert value == pytest.approx(grid.max(), rel=1e-8)
        assert np.linalg.norm(a) == pytest.approx(0.8, rel=1e-12)


def test_a_nonlinear_map_is_refused(tiny_fbp):
    op, centre, _ = tiny_fbp
    with pytest.raises(ValueError, match="linear reconstructor"):
        top_spectrum(lambda y: torch.relu(op.fbp(y)), centre[:1], k=4)


def test_default_pga_reaches_995_per_mille_of_the_certificate_on_fbp():
    """The config's default stop rule on a 32 x 32, 32-view FBP whose top singular values
    cluster like the demo's (pairs of nearly equal values)."""
    cfg = AttackConfig()
    op = ParallelBeam2D(32, 32, dtype=torch.float64, backend="matrix")
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    centre, x = op.A(x0), x0
    spectrum = top_spectrum(op.fbp, centre[:1], k=16)
    certs = linear_certificate(op.fbp, centre, x, cfg.eps, spectrum, relative=True)
    for eps, cert in zip(cfg.eps, certs, strict=True):
        pga = measurement_pga(
            op.fbp,
            centre,
            x,
            eps,
            relative=True,
            n_iter=cfg.n_iter,
            tol=cfg.rel_tol,
            patience=cfg.patience,
            step=cfg.step,
            momentum=cfg.momentum,
        )
        ratio = pga.error / cert.upper
        print(f"eps {eps}: PGA / certificate {ratio.tolist()}, steps {pga.iterations.tolist()}")
        assert bool((ratio >= 0.995).all())
        assert bool((pga.error <= cert.upper * (1 + 1e-9)).all())
