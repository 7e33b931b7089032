"""SIRT (simultaneous iterative reconstruction technique): the linear classical reference.

    x_{k+1} = x_k + C A^T R (y - A x_k),   R = 1 / A(1),  C = 1 / A^T(1)

with R and C the inverse row and column sums of A (computed as A(ones) and A_adjoint(ones);
rays or pixels with a zero sum get weight 0). Optional projection onto x >= 0 after each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SIRTInfo:
    """Convergence record of :func:`sirt_reconstruct`.

    ``residual`` has shape (iterations + 1, B): per-sample ||A x_k - y|| / ||y||, row 0 at x = 0.
    """

    iterations: int
    converged: torch.Tensor
    residual: torch.Tensor


def sirt_weights(op, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse row sums R (1, 1, V, D) and inverse column sums C (1, 1, N, N) of A."""
    ones_img = torch.ones(1, 1, op.n, op.n, dtype=like.dtype, device=like.device)
    rows = op.A(ones_img)
    cols = op.A_adjoint(torch.ones_like(rows))
    r = torch.where(rows > 0, 1.0 / rows.clamp_min(1e-12), torch.zeros_like(rows))
    c = torch.where(cols > 0, 1.0 / cols.clamp_min(1e-12), torch.zeros_like(cols))
    return r, c


def _sirt_update(op, x, residual, r, c, nonneg: bool):
    """One SIRT step given the current residual y - A x."""
    x = x + c * op.A_adjoint(r * residual)
    return x.clamp_min(0.0) if nonneg else x


def sirt_reconstruct(
    op, y: torch.Tensor, n_iter: int = 200, tol: float = 1e-5, nonneg: bool = True
) -> tuple[torch.Tensor, SIRTInfo]:
    """SIRT of sinograms ``y`` (B, 1, V, D) -> images (B, 1, N, N), starting from zero.

    Stops after ``n_iter`` iterations or when every sample's relative residual
    ||A x - y|| / ||y|| changed by less than ``tol`` (absolute) in one iteration.
    """
    with torch.no_grad():
        r, c = sirt_weights(op, y)
        x = torch.zeros(y.shape[0], 1, op.n, op.n, dtype=y.dtype, device=y.device)
        y_norm = y.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny)
        history = [torch.ones_like(y_norm)]
        converged = torch.zeros_like(y_norm, dtype=torch.bool)
        k = 0
        residual = y.clone()
        while k < n_iter and not bool(converged.all()):
            x = _sirt_update(op, x, residual, r, c, nonneg)
            residual = y - op.A(x)
            history.append(residual.flatten(1).norm(dim=1) / y_norm)
            converged = (history[-2] - history[-1]).abs() < tol
            k += 1
    return x, SIRTInfo(iterations=k, converged=converged, residual=torch.stack(history))


class UnrolledSIRT(torch.nn.Module):
    """Differentiable y -> x: ``n_iter`` SIRT iterations from x = 0.

    Without ``nonneg`` the map is linear in y (x = M y with M a fixed matrix polynomial in
    C A^T R A), so its worst-case perturbation is the top singular vector of M and autograd
    gives the exact adjoint; with ``nonneg`` it is piecewise linear.
    """

    def __init__(self, op, n_iter: int = 200, nonneg: bool = False):
        super().__init__()
        self.op = op
        self.n_iter = int(n_iter)
        self.nonneg = nonneg

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        r, c = sirt_weights(self.op, y)
        x = torch.zeros(y.shape[0], 1, self.op.n, self.op.n, dtype=y.dtype, device=y.device)
        for _ in range(self.n_iter):
            x = _sirt_update(self.op, x, y - self.op.A(x), r, c, self.nonneg)
        return x


def unrolled_sirt(op, n_iter: int = 200, nonneg: bool = False) -> UnrolledSIRT:
    """Differentiable callable y -> x running ``n_iter`` SIRT iterations (see UnrolledSIRT)."""
    return UnrolledSIRT(op, n_iter=n_iter, nonneg=nonneg)
