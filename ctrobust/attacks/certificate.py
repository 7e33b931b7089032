"""Exact worst case of a linear reconstructor: the trust-region subproblem, with two-sided bounds.

For a linear R (FBP; SIRT with a fixed number of iterations and no clipping) the sinogram attack
of Raj eq. 7 is

    Delta*(eps) = max_{||d||_2 <= eps} ||r + R d||_2,   r = R(c) - x,

with c the centre of the ball: maximising a convex quadratic over a ball, the trust-region
subproblem. PGA only ever gives a lower bound on it; this module brackets it.

* Lanczos (``scipy.sparse.linalg.eigsh``) on M = R^T R, whose matvecs are a forward pass and its
  vector-Jacobian product (``torch.autograd``), gives k Ritz pairs (V, Theta) and the residual
  E = M V - V Theta.
* **Lower bound**: the exact maximiser over the subspace span(V, Q b), b = R^T r, Q = I - V V^T,
  found by solving the projected problem's secular equation; the error of that feasible d is
  then evaluated by a forward pass, so the lower bound is a value actually attained.
* **Upper bound**: with V^T E = 0, M = V Theta V^T + Q M Q + Delta with ||Delta||_2 <= ||E||_F.
  If the Ritz values are the k largest eigenvalues (what Lanczos finds first; the assumption of
  this bound), Q M Q <= tau = min eig(Theta) + 2 ||E||_F on range(Q), so
  ||r + R d||^2 <= ||r||^2 + 2 b^T d + d^T (V Theta V^T + tau Q) d + ||E||_F eps^2, and the
  maximum of that majorant over the ball is again a diagonal secular equation.

The gap upper / lower measures how well the k Ritz pairs capture the problem; both are reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor

from ctrobust.attacks._ball import resolve_radius, sample_norms

LinearMap = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TopSpectrum:
    """k Ritz pairs of R^T R for one input shape (float64 NumPy, flattened inputs).

    Attributes:
        vectors: orthonormal Ritz vectors V, (n_in, k).
        images: R V, flattened outputs, (n_out, k).
        theta: Rayleigh matrix V^T R^T R V = (R V)^T (R V), (k, k).
        residual: ||R^T R V - V theta||_F, the Lanczos residual every bound carries.
        matvecs: R^T R products Lanczos used.
    """

    vectors: np.ndarray
    images: np.ndarray
    theta: np.ndarray
    residual: float
    matvecs: int

    @property
    def sigma_max(self) -> float:
        """Largest Ritz singular value of R (a lower bound on ||R||_2)."""
        return float(np.sqrt(max(np.linalg.eigvalsh(self.theta)[-1], 0.0)))


@dataclass(frozen=True)
class Certificate:
    """Two-sided bounds on the worst case of a linear reconstructor per sample, (B,) tensors.

    Attributes:
        lower: ||r + R d|| of the feasible ``delta`` (attained, so a lower bound).
        upper: rigorous upper bound given the Ritz assumption of the module docstring.
        clean_error: ||r|| (d = 0).
        eps: absolute radius per sample.
        delta: the maximiser found, shaped like the centre, ||delta_i|| <= eps_i.
    """

    lower: Tensor
    upper: Tensor
    clean_error: Tensor
    eps: Tensor
    delta: Tensor


def _apply(R: LinearMap, columns: np.ndarray, shape: tuple[int, ...], like: Tensor) -> np.ndarray:
    """R applied to each column of ``columns`` (n_in, m) reshaped to ``shape``: (n_out, m)."""
    batch = torch.from_numpy(np.ascontiguousarray(columns.T)).to(like.device, like.dtype)
    with torch.no_grad():
        out = R(batch.reshape(columns.shape[1], *shape))
    return out.reshape(columns.shape[1], -1).double().cpu().numpy().T


def _apply_adjoint(R: LinearMap, columns: np.ndarray, shape_in: tuple[int, ...], like: Tensor):
    """R^T applied to each column of ``columns`` (n_out, m) by autograd: (n_in, m)."""
    m = columns.shape[1]
    probe = torch.zeros(m, *shape_in, dtype=like.dtype, device=like.device, requires_grad=True)
    out = R(probe)
    cotangent = torch.from_numpy(np.ascontiguousarray(columns.T)).to(like.device, like.dtype)
    (grad,) = torch.autograd.grad(out, probe, cotangent.reshape(out.shape))
    return grad.reshape(m, -1).double().cpu().numpy().T


def _check_linear(R: LinearMap, like: Tensor) -> None:
    """Refuse a map that is not linear on two random inputs: R(0) = 0, R(u + 2w) = R(u) + 2R(w)
    and R(-u) = -R(u) (the last two catch positively homogeneous maps such as ReLU(FBP))."""
    gen = torch.Generator().manual_seed(0)
    u, w = (torch.randn(like.shape, generator=gen, dtype=like.dtype).to(like.device) for _ in "uw")
    with torch.no_grad():
        zero, ru, rw = R(torch.zeros_like(u)), R(u), R(w)
        gaps = (zero, R(u + 2 * w) - ru - 2 * rw, R(-u) + ru)
    tol = (1e-4 if like.dtype == torch.float32 else 1e-10) * (float(ru.norm()) + float(rw.norm()))
    if max(float(g.norm()) for g in gaps) > max(tol, torch.finfo(like.dtype).tiny):
        raise ValueError("the certificate needs a linear reconstructor: R(u + 2w) != R(u) + 2R(w)")


def top_spectrum(R: LinearMap, like: Tensor, *, k: int = 16, tol: float = 1e-8) -> TopSpectrum:
    """The k largest Ritz pairs of R^T R by Lanczos, for inputs shaped like one sample of ``like``.

    Args:
        R: linear, differentiable map from (B, *shape) to (B, ...), samples independent.
        like: a tensor with the input's sample shape, dtype and device, e.g. a (1, 1, V, D) batch.
        k: Ritz pairs kept (clamped below the input dimension).
        tol: eigsh's relative accuracy on the Ritz values.
    """
    shape = tuple(like.shape[1:])
    _check_linear(R, like[:1])
    n_in = int(np.prod(shape))
    k = max(1, min(k, n_in - 2))
    count = 0

    def normal(v: np.ndarray) -> np.ndarray:
        nonlocal count
        cols = v.reshape(n_in, -1)
        count += cols.shape[1]
        return _apply_adjoint(R, _apply(R, cols, shape, like), shape, like).reshape(v.shape)

    op = LinearOperator((n_in, n_in), matvec=normal, matmat=normal, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(n_in)
    _, vectors = eigsh(op, k=k, which="LA", tol=tol, v0=start)
    vectors, _ = np.linalg.qr(vectors)
    images = _apply(R, vectors, shape, like)
    theta = images.T @ images
    theta = 0.5 * (theta + theta.T)
    residual = _apply_adjoint(R, images, shape, like) - vectors @ theta
    return TopSpectrum(vectors, images, theta, float(np.linalg.norm(residual)), count)


def trust_region_max(
    gamma: np.ndarray, beta: np.ndarray, c: float, eps: float
) -> tuple[float, np.ndarray, float]:
    """max c + 2 beta^T a + sum_i gamma_i a_i^2 over ||a||_2 <= eps, the maximiser a and mu.

    The maximiser lies on the sphere, a_i = beta_i / (mu - gamma_i) with mu >= max gamma solving
    the secular equation ||a(mu)|| = eps; when beta vanishes on the top eigenvalue (the hard
    case) the leftover norm goes along that eigenvector.
    """
    gamma, beta = np.asarray(gamma, float), np.asarray(beta, float)
    if eps <= 0 or gamma.size == 0:
        return c, np.zeros_like(beta), np.inf
    top = int(np.argmax(gamma))
    g1, beta_norm = gamma[top], float(np.linalg.norm(beta))
    spread = max(abs(g1), beta_norm / eps, np.finfo(float).tiny)
    cluster = gamma >= g1 - 1e-13 * spread

    def coeffs(mu: float) -> np.ndarray:
        return beta / (mu - gamma)

    hi = g1 + beta_norm / eps  # ||a(hi)|| <= ||beta|| / (hi - g1) = eps
    beta_top = float(np.linalg.norm(beta[cluster]))
    if beta_top > 1e-14 * max(beta_norm, np.finfo(float).tiny):
        lo = g1 + beta_top / (2 * eps)  # ||a(lo)|| >= beta_top / (lo - g1) = 2 eps
        mu = brentq(lambda m: np.linalg.norm(coeffs(m)) - eps, lo, hi, xtol=1e-300, rtol=1e-15)
        a = coeffs(mu)
    else:  # hard case: mu = g1 unless the rest alone already overfills the ball
        a = np.where(cluster, 0.0, beta / np.where(cluster, 1.0, g1 - gamma))
        if np.linalg.norm(a) > eps:
            lo = g1 + 1e-12 * spread
            mu = brentq(lambda m: np.linalg.norm(coeffs(m)) - eps, lo, hi, xtol=1e-300, rtol=1e-15)
            a = coeffs(mu)
        else:
            a[top] = np.sqrt(max(eps**2 - float(a @ a), 0.0))
            mu = g1
    a *= min(1.0, eps / max(float(np.linalg.norm(a)), np.finfo(float).tiny))
    return c + 2 * float(beta @ a) + float(gamma @ a**2), a, mu


def _subspace_max(images: np.ndarray, r: np.ndarray, eps: float) -> tuple[np.ndarray, float]:
    """Maximiser coefficients of ||r + images a|| over ||a|| <= eps (orthonormal input basis),
    and the multiplier mu of its secular equation."""
    gram = images.T @ images
    gamma, u = np.linalg.eigh(0.5 * (gram + gram.T))
    _, a, mu = trust_region_max(gamma, u.T @ (images.T @ r), float(r @ r), eps)
    return u @ a, mu


def _dual_bound(
    r: np.ndarray,
    b: np.ndarray,
    z: np.ndarray,
    Mz: np.ndarray,
    mu: float,
    eps: float,
    lam_max: float,
) -> float:
    """Lagrangian bound on max ||r + R d||^2 over ||d|| <= eps at multiplier mu > lam_max.

    For A = mu I - R^T R (positive definite when mu exceeds lam_max >= lambda_max(R^T R)) the
    bound is ||r||^2 + mu eps^2 + b^T A^{-1} b, and for any z, with s = b - A z,
    b^T A^{-1} b = z^T (2 b - A z) + s^T A^{-1} s <= z^T (2 b - A z) + ||s||^2 / (mu - lam_max).
    """
    if not mu > lam_max:
        return np.inf
    Az = mu * z - Mz
    s = b - Az
    return float(r @ r) + mu * eps**2 + float(z @ (2 * b - Az)) + float(s @ s) / (mu - lam_max)


def _tail_krylov(
    R: LinearMap, V: np.ndarray, b: np.ndarray, m: int, shape: tuple[int, ...], like: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Krylov basis of Q M on Q b (Q = I - V V^T), m vectors per sample, and R of each.

    Returns (basis, images), shaped (n_in, m, B) and (n_out, m, B); a sample whose Krylov space
    is exhausted gets zero columns. Full re-orthogonalisation, against V and earlier vectors.
    """
    basis, images = [], []
    w = b - V @ (V.T @ b)
    for _ in range(m):
        for q in basis:  # twice is enough (Kahan's rule), once more against V
            w -= q * np.einsum("ib,ib->b", q, w)
        for q in basis:
            w -= q * np.einsum("ib,ib->b", q, w)
        w -= V @ (V.T @ w)
        norms = np.linalg.norm(w, axis=0)
        scale = max(float(np.linalg.norm(b)), np.finfo(float).tiny)
        w = np.where(norms > 1e-10 * scale, w / np.where(norms > 0, norms, 1.0), 0.0)
        basis.append(w)
        images.append(_apply(R, w, shape, like))
        w = _apply_adjoint(R, images[-1], shape, like)
    return np.stack(basis, axis=1), np.stack(images, axis=1)


def linear_certificate(
    R: LinearMap,
    centre: Tensor,
    x_ref: Tensor,
    eps: list[float],
    spectrum: TopSpectrum,
    *,
    relative: bool = False,
    krylov: int = 16,
) -> list[Certificate]:
    """Bounds on max_{||d|| <= eps} ||R(centre + d) - x_ref|| per sample, one per eps.

    The lower bound maximises over span(V, K), K the Krylov space of the deflated operator
    Q R^T R on Q b: the top Ritz vectors carry the nearly singular part of the secular
    equation, and the rest is well conditioned, so a few Krylov vectors recover it.

    Args:
        R: the linear reconstructor ``spectrum`` was computed for.
        centre: ball centres (B, *shape), e.g. A x0.
        x_ref: reference images (B, ...).
        eps: radii, absolute or (``relative``) fractions of ||centre_i||.
        spectrum: :func:`top_spectrum` of R for this input shape.
        relative: eps relative to each sample's ||centre||.
        krylov: Krylov vectors added to the Ritz vectors for the lower bound, per sample.
    """
    centre, x_ref = centre.detach(), x_ref.detach()
    shape = tuple(centre.shape[1:])
    with torch.no_grad():
        r_t = R(centre) - x_ref
    r = r_t.reshape(len(centre), -1).double().cpu().numpy().T  # (n_out, B)
    b = _apply_adjoint(R, r, shape, centre)  # (n_in, B)
    V, RV = spectrum.vectors, spectrum.images
    gamma, u = np.linalg.eigh(spectrum.theta)
    tau = gamma[0] + 2 * spectrum.residual
    tail_norm = np.linalg.norm(b - V @ (V.T @ b), axis=0)
    if krylov:
        K, RK = _tail_krylov(R, V, b, krylov, shape, centre)
    lam_max = gamma[-1] + spectrum.residual
    certificates = []
    for e in eps:
        radius = resolve_radius(e, centre, relative)
        deltas, images_d, mus, spectral = [], [], [], []
        for i in range(len(centre)):
            rad = float(radius[i])
            basis, images = (
                (np.hstack([V, K[:, :, i]]), np.hstack([RV, RK[:, :, i]])) if krylov else (V, RV)
            )
            a, mu = _subspace_max(images, r[:, i], rad)
            deltas.append(basis @ a)
            images_d.append(images @ a)
            mus.append(mu)
            beta = np.append(u.T @ (RV.T @ r[:, i]), tail_norm[i])
            bound, _, _ = trust_region_max(
                np.append(gamma, tau), beta, float(r[:, i] @ r[:, i]), rad
            )
            spectral.append(bound + spectrum.residual * rad**2)
        z = np.stack(deltas, axis=1)
        Mz = _apply_adjoint(R, np.stack(images_d, axis=1), shape, centre)
        upper = [
            np.sqrt(
                max(
                    min(
                        spectral[i],
                        _dual_bound(
                            r[:, i], b[:, i], z[:, i], Mz[:, i], mus[i], float(radius[i]), lam_max
                        ),
                    ),
                    0.0,
                )
            )
            for i in range(len(centre))
        ]
        delta = torch.from_numpy(z.T.copy()).to(centre.device, centre.dtype)
        delta = delta.reshape(centre.shape)
        norms = sample_norms(delta)
        shrink = torch.where(norms > radius, radius / norms.clamp_min(1e-300), 1.0)
        delta = delta * shrink.reshape(-1, *([1] * (delta.dim() - 1)))
        with torch.no_grad():
            lower = sample_norms(R(centre + delta) - x_ref)
        certificates.append(
            Certificate(
                lower=lower,
                upper=torch.tensor(upper, dtype=lower.dtype, device=lower.device),
                clean_error=sample_norms(r_t),
                eps=radius,
                delta=delta,
            )
        )
    return certificates
