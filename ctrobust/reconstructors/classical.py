"""Classical reconstructors as :class:`Reconstructor`: FBP, TV stopped on its primal-dual gap, SIRT.

These are the stable references of Antun et al.'s test and the linear baseline of Raj et al.'s
attack. Each keeps its own operator, so the same method can be rebuilt for another view count
(:meth:`Reconstructor.for_operator`) in the more-views sweep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrobust.instability.sirt import sirt_reconstruct
from ctrobust.instability.tv import DEFAULT_X_MAX, TVInfo, tv_reconstruct

from .base import MethodId, MethodKind, Provenance, Reconstructor


class FBP(Reconstructor):
    """Filtered back-projection R = (pi/V) A^T H; linear, gradients flow (backward H A)."""

    def __init__(self, operator, method: MethodId | None = None) -> None:
        super().__init__(
            method or MethodId.fbp(operator.n_views),
            f"FBP, {operator.n_views} views",
            operator,
            Provenance(f"filtered back-projection ({operator.window} filter)"),
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.operator.fbp(y)

    def for_operator(self, operator) -> FBP:
        return FBP(operator, self.method)


class TV(Reconstructor):
    """TV-regularised least squares (Chambolle-Pock), run until its primal-dual gap certifies
    the solution (relative gap below ``tol``) or ``n_iter`` iterations.

    The same map is reported and attacked: it is differentiable, because autograd records the
    iterations the gap rule runs (see :func:`ctrobust.instability.tv.tv_reconstruct`).

    The weight ``lam`` is the same at every view count. That is what the noise model asks
    for: each detector bin of each view receives ``i0`` photons (``add_poisson_noise``), so
    the variance of one sinogram entry does not depend on V, and the MAP weight
    lam = sigma^2 * beta of 1/2 ||A x - y||^2 + lam TV(x) (Gaussian likelihood of variance
    sigma^2 per entry, prior exp(-beta TV)) does not either. More views then add data against
    a fixed prior, so TV's bias shrinks as views are added (docs/instability.md).

    ``lam`` may be one weight per slice, (B,) (sigma^2 differs between patients,
    :func:`ctrobust.instability.tv_weight.noise_variance`): a batch of k copies of those B
    slices (details, attacked points) gets the weights tiled k times.
    """

    def __init__(
        self,
        operator,
        lam: float | Tensor,
        *,
        n_iter: int,
        tol: float,
        x_max: float = DEFAULT_X_MAX,
    ) -> None:
        self.lam = torch.as_tensor(lam, dtype=torch.float64).reshape(-1)
        self.n_iter, self.tol, self.x_max = n_iter, tol, x_max
        weights = ", ".join(f"{v:.3g}" for v in self.lam.tolist())
        super().__init__(
            MethodId(MethodKind.TV, "tv"),
            "TV",
            operator,
            Provenance(
                f"TV-regularised least squares, weight {weights} at every view count, stopped "
                f"at relative primal-dual gap {tol:g} (at most {n_iter} primal-dual iterations)"
            ),
        )

    def weights_for(self, y: Tensor) -> Tensor:
        """The weight of every sample of ``y``: the per-slice weights tiled over the batch."""
        if y.shape[0] % self.lam.numel():
            raise ValueError(
                f"a batch of {y.shape[0]} sinograms is not a multiple of TV's "
                f"{self.lam.numel()} per-slice weights"
            )
        return self.lam.to(y).repeat(y.shape[0] // self.lam.numel())

    def reconstruct(self, y: Tensor) -> tuple[Tensor, TVInfo]:
        """The reconstruction and its convergence record."""
        return tv_reconstruct(
            self.operator,
            y,
            self.weights_for(y),
            n_iter_max=self.n_iter,
            tol=self.tol,
            x_max=self.x_max,
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.reconstruct(y)[0]

    def for_operator(self, operator) -> TV:
        return TV(operator, self.lam, n_iter=self.n_iter, tol=self.tol, x_max=self.x_max)


class SIRT(Reconstructor):
    """Non-negative SIRT from zero, at most ``n_iter`` iterations."""

    differentiable = False

    def __init__(self, operator, *, n_iter: int, tol: float = 1e-5) -> None:
        super().__init__(
            MethodId(MethodKind.SIRT, "sirt"),
            "SIRT",
            operator,
            Provenance(f"SIRT, at most {n_iter} iterations"),
        )
        self.n_iter, self.tol = n_iter, tol

    def forward(self, y: Tensor) -> Tensor:
        with torch.no_grad():
            return sirt_reconstruct(self.operator, y, n_iter=self.n_iter, tol=self.tol)[0]

    def for_operator(self, operator) -> SIRT:
        return SIRT(operator, n_iter=self.n_iter, tol=self.tol)
