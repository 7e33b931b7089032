"""Total-variation reconstruction by Chambolle-Pock primal-dual: the stable classical reference.

Solves, per sample of a batch,

    min_x  1/2 ||A x - y||^2 + lam * TV(x)   subject to  lo <= x <= x_max

with isotropic TV (forward differences, :mod:`.finite_diff`), lo = 0 (attenuation is
non-negative) or -x_max without ``nonneg``. The upper bound x_max is far above any tissue
(default 4 = +3000 HU) and inactive in practice (:attr:`TVInfo.box_active` says so); it bounds
the primal domain, which makes the primal-dual gap finite (Chambolle & Pock 2011's partial gap),
so the iteration stops on a certificate: gap >= objective - minimum.

The stacked operator is K = [A; s * grad] with s = ||A|| / sqrt(8): scaling the gradient
block to the projector's norm is a diagonal preconditioning (Pock & Chambolle 2011) that keeps
both blocks equally fast; the objective is unchanged because the TV term is written as
(lam / s) ||s grad x||_{2,1}. Step sizes satisfy sigma * tau * ||K||^2 < 1 with
||K||^2 <= ||A||^2 + s^2 * 8 = 2 ||A||^2.

Gap at (x, q, p), with |p_i| <= lam / s guaranteed by the dual projection and z = -K^T (q, p):

    P(x) = 1/2 ||A x - y||^2 + lam TV(x)
    D(q, p) = -1/2 ||q||^2 - <q, y> - sum_i max(lo z_i, x_max z_i)
    P(x) - min >= 0 and P(x) - min <= P(x) - D(q, p) = gap.

The solver is differentiable: under autograd the iterations it runs are recorded (the stopping
index is chosen without gradients), so the gradient of y -> x is the exact gradient of the map
that is reported, almost everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .finite_diff import GRADIENT_NORM_BOUND, divergence, gradient, total_variation
from .opnorm import operator_norm

NORM_MARGIN = 1.02
"""Safety factor on the power-iteration norm estimate (which approaches ||A|| from below)."""

DEFAULT_X_MAX = 4.0
"""Upper bound of the primal box in relative attenuation (+3000 HU, above cortical bone)."""


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

    ``objective`` has shape (iterations + 1, B): row 0 is the objective at the start point
    (a sample stops changing once it has converged). ``gap`` is the final relative
    primal-dual gap (P - D) / P per sample, ``converged`` whether it fell below ``tol``, and
    ``sample_iterations`` how many iterations each sample ran. ``box_active`` says whether a
    sample touches the upper bound x_max (then the bound, not only the data, shaped it).
    """

    iterations: int
    sample_iterations: torch.Tensor
    converged: torch.Tensor
    gap: torch.Tensor
    objective: torch.Tensor
    box_active: torch.Tensor
    tau: float
    sigma: float
    grad_scale: float
    x_max: float


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
    kt_w: torch.Tensor | None = None  # K^T (q, p) = A^T q - s div p of the current dual

    def take(self, rows: torch.Tensor) -> _State:
        """The samples at ``rows`` (1-D indices), as a state of their own."""
        return _State(
            **{
                name: None if t is None else t.index_select(0, rows)
                for name, t in vars(self).items()
            }
        )


class _PrimalDualTV:
    """Chambolle-Pock iteration for the TV problem and its primal-dual gap."""

    def __init__(
        self, op, nonneg: bool, step_ratio: float | None, norm: float | None, x_max: float
    ):
        norm_a = NORM_MARGIN * (operator_norm(op) if norm is None else float(norm))
        norm_k = (2.0**0.5) * norm_a
        step_ratio = default_step_ratio(op.n) if step_ratio is None else step_ratio
        self.op = op
        self.lo, self.hi = (0.0 if nonneg else -float(x_max)), float(x_max)
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
            x = x0.clamp(self.lo, self.hi)
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
        kt_w = self.op.A_adjoint(q) - s * divergence(p)
        x = (st.x - tau * kt_w).clamp(self.lo, self.hi)
        ax = self.op.A(x)
        return _State(x, 2.0 * x - st.x, ax, 2.0 * ax - st.ax, q, p, kt_w)

    def primal(self, st: _State, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return _objective(st.ax, st.x, y, lam)

    def relative_gap(self, st: _State, y: torch.Tensor, primal: torch.Tensor) -> torch.Tensor:
        """(P(x) - D(q, p)) / P(x) per sample (see the module docstring), given P(x)."""
        z = -st.kt_w
        support = torch.maximum(self.lo * z, self.hi * z).flatten(1).sum(dim=1)
        dual = -0.5 * st.q.pow(2).flatten(1).sum(dim=1) - (st.q * y).flatten(1).sum(dim=1)
        gap = primal - (dual - support)
        return gap / primal.clamp_min(torch.finfo(y.dtype).tiny)


def tv_reconstruct(
    op,
    y: torch.Tensor,
    lam: torch.Tensor | float,
    n_iter_max: int = 1000,
    tol: float = 1e-3,
    x0: torch.Tensor | None = None,
    nonneg: bool = True,
    step_ratio: float | None = None,
    norm: float | None = None,
    x_max: float = DEFAULT_X_MAX,
) -> tuple[torch.Tensor, TVInfo]:
    """TV-regularised reconstruction of sinograms ``y`` (B, 1, V, D) -> images (B, 1, N, N).

    Args:
        op: projector with ``A``, ``A_adjoint`` and ``n`` (``norm()`` is used when present).
        y: measured sinograms; with ``y.requires_grad`` and autograd on, the run is recorded
            and the result is differentiable (memory grows with the iterations).
        lam: TV weight, a scalar or one per sample (B,).
        n_iter_max: iteration cap.
        tol: a sample stops once its relative primal-dual gap (P - D) / P is below ``tol``
            (then objective - minimum <= tol * objective); its iterate is frozen from there
            and later steps run only on the samples still going, so a batch returns what each
            slice would alone and costs what its unconverged samples cost. 0 runs
            ``n_iter_max``.
        x0: start image; None means the operator's FBP (zeros if it has no ``fbp``). The warm
            start avoids the overshoot of the first iterations from zero (objective rises).
        nonneg: constrain x >= 0 (attenuation is non-negative).
        step_ratio: tau / sigma = step_ratio^2 (tau * sigma * ||K||^2 < 1 holds for any ratio);
            None: :func:`default_step_ratio`.
        norm: ||A|| if known (skips the power iteration).
        x_max: upper bound of the primal box (makes the gap finite; see the module docstring).

    Returns:
        The reconstruction and a :class:`TVInfo`.
    """
    pd = _PrimalDualTV(op, nonneg, step_ratio, norm, x_max)
    lam_b = _per_sample(lam, y)
    st = pd.start(y, x0)
    with torch.no_grad():
        objective = pd.primal(st, y, lam_b)
    history = [objective]
    gap = torch.full_like(lam_b, float("inf")).detach()
    count = torch.zeros_like(lam_b, dtype=torch.long)
    # the samples still iterating (indices into the batch) and their data; a sample that
    # converges leaves them with its final image, so every later step costs only the others
    running, y_run, lam_run = torch.arange(y.shape[0], device=y.device), y, lam_b
    stopped: list[tuple[torch.Tensor, torch.Tensor]] = []
    k = 0
    while k < n_iter_max and running.numel():
        st = pd.step(st, y_run, lam_run)
        count[running] += 1
        with torch.no_grad():
            primal = pd.primal(st, y_run, lam_run)
            gap_run = pd.relative_gap(st, y_run, primal)
            gap[running] = gap_run
            objective = objective.index_copy(0, running, primal)
            history.append(objective)
            stop = gap_run < tol if tol > 0 else torch.zeros_like(gap_run, dtype=torch.bool)
        k += 1
        if bool(stop.any()):
            stopped.append((running[stop], st.x[stop]))
            keep = (~stop).nonzero().squeeze(1)
            st, y_run, lam_run, running = st.take(keep), y_run[keep], lam_run[keep], running[keep]
    x = _in_batch_order(stopped + [(running, st.x)])
    info = TVInfo(
        iterations=k,
        sample_iterations=count,
        converged=(gap < tol) if tol > 0 else torch.zeros_like(gap, dtype=torch.bool),
        gap=gap,
        objective=torch.stack(history),
        box_active=(x.detach().flatten(1).amax(dim=1) >= pd.hi),
        tau=pd.tau,
        sigma=pd.sigma,
        grad_scale=pd.grad_scale,
        x_max=pd.hi,
    )
    return x, info


def _in_batch_order(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The images of (batch indices, images) parts, put back in batch order (differentiably)."""
    if len(parts) == 1:  # no sample stopped early: the batch is still in order
        return parts[0][1]
    rows = torch.cat([r for r, _ in parts])
    return torch.cat([x for _, x in parts]).index_select(0, torch.argsort(rows))
