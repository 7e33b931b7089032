"""Classical reconstructors: FBP, converged TV, unrolled TV and SIRT, as :class:`Reconstructor`.

These are the stable references of Antun et al.'s test and the linear baseline of Raj et al.'s
attack. Each keeps its own operator, so the same method can be rebuilt for another view count
(:meth:`Reconstructor.for_operator`) in the more-views sweep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrobust.instability.sirt import sirt_reconstruct
from ctrobust.instability.tv import tv_reconstruct, unrolled_tv

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
    """TV-regularised least squares (Chambolle-Pock), run to its stopping rule.

    The weight is ``lam`` at ``reference_views`` views. The data term 1/2 ||A x - y||^2 sums
    over views, so with ``scale_with_views`` the weight at V views becomes
    lam V / reference_views, which keeps the balance between data term and regulariser that
    was chosen at the reference view count; otherwise it stays ``lam`` at every view count.
    The iteration stops on a relative-change rule, so gradients are not offered.
    """

    differentiable = False

    def __init__(
        self,
        operator,
        lam: float,
        *,
        n_iter: int,
        tol: float,
        reference_views: int | None = None,
        scale_with_views: bool = True,
    ) -> None:
        self.reference_views = reference_views or operator.n_views
        self.scale_with_views = scale_with_views
        scale = operator.n_views / self.reference_views if scale_with_views else 1.0
        self.lam = lam * scale
        self.base_lam, self.n_iter, self.tol = lam, n_iter, tol
        super().__init__(
            MethodId(MethodKind.TV, "tv"),
            "TV",
            operator,
            Provenance(
                f"TV-regularised least squares, weight {lam:g} at {self.reference_views} views, "
                f"at most {n_iter} primal-dual iterations, relative-change stop {tol:g}"
            ),
        )

    def forward(self, y: Tensor) -> Tensor:
        with torch.no_grad():
            return tv_reconstruct(self.operator, y, self.lam, n_iter_max=self.n_iter, tol=self.tol)[
                0
            ]

    def for_operator(self, operator) -> TV:
        return TV(
            operator,
            self.base_lam,
            n_iter=self.n_iter,
            tol=self.tol,
            reference_views=self.reference_views,
            scale_with_views=self.scale_with_views,
        )


class UnrolledTV(Reconstructor):
    """A fixed number of TV primal-dual iterations, differentiable for attacks."""

    def __init__(self, operator, lam: float, *, n_iter: int) -> None:
        super().__init__(
            MethodId(MethodKind.TV, "tv"),
            f"TV, {n_iter} unrolled iterations",
            operator,
            Provenance(f"TV-regularised least squares, weight {lam:g}, {n_iter} iterations"),
        )
        self.iterations = unrolled_tv(operator, lam, n_iter=n_iter)
        self.n_iter = n_iter

    def forward(self, y: Tensor) -> Tensor:
        return self.iterations(y)


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
