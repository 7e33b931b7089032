"""Total-variation reconstruction by Chambolle-Pock primal-dual: the stable classical reference.

Solves, per sample of a batch,

    min_x  1/2 ||A x - y||^2 + lam * TV(x)   (+ indicator of x >= 0 when ``nonneg``)

with isotropic TV (forward differences, :mod:`.finite_diff`). The stacked operator is
K = [A; s * grad] with s = ||A|| / sqrt(8): scaling the gradient block to the projector's
norm is a diagonal preconditioning (Pock & Chambolle 2011) that keeps both blocks equally fast;
the objective is unchanged because the TV term is written as (lam / s) ||s grad x||_{2,1}.
Step sizes satisfy sigma * tau * ||K||^2 < 1 with ||K||^2 <= ||A||^2 + s^2 * 8 = 2 ||A||^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .finite_diff import GRADIENT_NORM_BOUND, divergence, gradient, total_variation
from .opnorm import operator_norm

NORM_MARGIN = 1.02
"""Safety factor on the power-iteration norm estimate (which approaches ||A|| from below)."""


def default_step_ratio(n: int) -> float:
    """tau / sigma = ratio^2 with ratio = 1.6 / sqrt(n): 0.2 at n = 64, 0.1 at 256, 0.07 at 512.

    Empirical (docs/instability.md): on the Shepp-Logan head with Poisson noise the fastest
    monotone ratios were 0.2 (n = 64, 50 views), 0.07-0.1 (n = 256, 143 views) and 0.05-0.07
    (n = 512, 143 views), all started from the FBP; larger ratios make the objective rise.
    """
    return 1.6 / n**0.5


@dataclass(frozen=True)
class TVInfo:
    """Convergence record of :func:`tv_reconstruct`.

    ``objective`` has shape (iterations + 1, B): row 0 is the objective at the start point.
    ``rel_change`` is the last per-sample ||x_k+1 - x_k|| / ||x_k+1||; ``converged`` says
    whether it fell below ``tol``.
    """

    iterations: int
    converged: torch.Tensor
    rel_change: torch.Tensor
    objective: torch.Tensor
    tau: float
    sigma: float
    grad_scale: float


def tv_objective(op, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Per-sample 1/2 ||A x - y||^2 + lam TV(x), shape (B,)."""
    return _objective(op.A(x), x, y, _per_sample(lam, x))


def _per_sample(lam: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Regularisation weight as a (B,) tensor (a scalar is broadcast)."""
    lam = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    return lam.expand(like.shape[0]) if lam.ndim == 0 else lam.reshape(like.shape[0])


def _objective(ax, x, y, lam):
    return 0.5 * (ax - y).pow(2).flatten(1).sum(dim=1) + lam * total_variation(x)


@dataclass
class _State:
    x: torch.Tensor
    x_bar: torch.Tensor
    ax: torch.Tensor
    ax_bar: torch.Tensor
    q: torch.Tensor
    p: torch.Tensor


class _PrimalDualTV:
    """Chambolle-Pock iteration for the TV problem, shared by the solver and the unrolled map."""

    def __init__(self, op, nonneg: bool, step_ratio: float | None, norm: float | None):
        norm_a = NORM_MARGIN * (operator_norm(op) if norm is None else float(norm))
        norm_k = (2.0**0.5) * norm_a
        step_ratio = default_step_ratio(op.n) if step_ratio is None else step_ratio
        self.op = op
        self.nonneg = nonneg
        self.grad_scale = norm_a / GRADIENT_NORM_BOUND
        self.tau = step_ratio / norm_k
        self.sigma = 1.0 / (step_ratio * norm_k)

    def start(self, y: torch.Tensor, x0: torch.Tensor | None) -> _State:
        op = self.op
        if x0 is None and hasattr(op, "fbp"):
            x0 = op.fbp(y)
        if x0 is None:
            x = torch.zeros(y.shape[0], 1, op.n, op.n, dtype=y.dtype, device=y.device)
        else:
            x = x0.clamp_min(0.0) if self.nonneg else x0
        ax = op.A(x)
        p = torch.zeros(y.shape[0], 2, op.n, op.n, dtype=y.dtype, device=y.device)
        return _State(x, x, ax, ax, torch.zeros_like(y), p)

    def step(self, st: _State, y: torch.Tensor, lam: torch.Tensor) -> _State:
        s, sigma, tau = self.grad_scale, self.sigma, self.tau
        q = (st.q + sigma * (st.ax_bar - y)) / (1.0 + sigma)
        p = st.p + (sigma * s) * gradient(st.x_bar)
        radius_sq = (lam / s).pow(2).view(-1, 1, 1, 1)
        # clamp before sqrt: no infinite derivative of sqrt at p = 0 under autograd
        p = p / torch.clamp(p.pow(2).sum(dim=1, keepdim=True) / radius_sq, min=1.0).sqrt()
        x = st.x - tau * (self.op.A_adjoint(q) - s * divergence(p))
        if self.nonneg:
            x = x.clamp_min(0.0)
        ax = self.op.A(x)
        return _State(x, 2.0 * x - st.x, ax, 2.0 * ax - st.ax, q, p)


def tv_reconstruct(
    op,
    y: torch.Tensor,
    lam: torch.Tensor | float,
    n_iter_max: int = 1000,
    tol: float = 1e-4,
    x0: torch.Tensor | None = None,
    nonneg: bool = True,
    step_ratio: float | None = None,
    norm: float | None = None,
) -> tuple[torch.Tensor, TVInfo]:
    """TV-regularised reconstruction of sinograms ``y`` (B, 1, V, D) -> images (B, 1, N, N).

    Args:
        op: projector with ``A``, ``A_adjoint`` and ``n`` (``norm()`` is used when present).
        y: measured sinograms.
        lam: TV weight, a scalar or one per sample (B,).
        n_iter_max: iteration cap.
        tol: stop when every sample's relative change ||x_k+1 - x_k|| / ||x_k+1|| < tol.
        x0: start image; None means the operator's FBP (zeros if it has no ``fbp``). The warm
            start avoids the overshoot of the first iterations from zero (objective rises).
        nonneg: constrain x >= 0 (attenuation is non-negative).
        step_ratio: tau / sigma = step_ratio^2 (tau * sigma * ||K||^2 < 1 holds for any ratio);
            None: :func:`default_step_ratio`.
        norm: ||A|| if known (skips the power iteration).

    Returns:
        The reconstruction and a :class:`TVInfo` with the per-sample objective history.
    """
    pd = _PrimalDualTV(op, nonneg, step_ratio, norm)
    with torch.no_grad():
        lam_b = _per_sample(lam, y)
        st = pd.start(y, x0)
        history = [_objective(st.ax, st.x, y, lam_b)]
        rel = torch.full_like(lam_b, float("inf"))
        k = 0
        while k < n_iter_max and not bool((rel < tol).all()):
            new = pd.step(st, y, lam_b)
            diff = (new.x - st.x).flatten(1).norm(dim=1)
            rel = diff / new.x.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny)
            st = new
            history.append(_objective(st.ax, st.x, y, lam_b))
            k += 1
    info = TVInfo(
        iterations=k,
        converged=rel < tol,
        rel_change=rel,
        objective=torch.stack(history),
        tau=pd.tau,
        sigma=pd.sigma,
        grad_scale=pd.grad_scale,
    )
    return st.x, info


class UnrolledTV(torch.nn.Module):
    """Differentiable y -> x: a fixed number of Chambolle-Pock TV iterations from the FBP.

    A cheaper proxy for the converged :func:`tv_reconstruct`, built for attacks: a PGA on the
    sinogram back-propagates through every iteration (autograd through ``op.A``/``op.A_adjoint``,
    the FBP start, the clamp and the dual projection, which are differentiable almost
    everywhere), so worst-case figures of the network and of TV compare like with like. It
    returns exactly the iterate of ``tv_reconstruct(op, y, lam, n_iter_max=n_iter, tol=0)``;
    how close that is to the converged solution is measured in docs/instability.md.
    Memory grows linearly with ``n_iter`` under autograd.
    """

    def __init__(
        self,
        op,
        lam: float,
        n_iter: int = 200,
        nonneg: bool = True,
        step_ratio: float | None = None,
        norm: float | None = None,
    ):
        super().__init__()
        self.op = op
        self.lam = float(lam)
        self.n_iter = int(n_iter)
        self._pd = _PrimalDualTV(op, nonneg, step_ratio, norm)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        lam_b = _per_sample(self.lam, y)
        st = self._pd.start(y, None)
        for _ in range(self.n_iter):
            st = self._pd.step(st, y, lam_b)
        return st.x


def unrolled_tv(op, lam: float, n_iter: int = 200, nonneg: bool = True, **kwargs) -> UnrolledTV:
    """Differentiable callable y -> x running ``n_iter`` unrolled TV iterations (see UnrolledTV)."""
    return UnrolledTV(op, lam, n_iter=n_iter, nonneg=nonneg, **kwargs)
