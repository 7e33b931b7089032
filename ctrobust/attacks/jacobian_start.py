"""A PGA start along the top singular vector of the reconstructor's Jacobian at the centre.

Near the centre c, f(c + d) - x ~ r + J d with J = df/dy(c), so the linearised worst case on a
small ball is eps times J's top right singular vector v. A few power steps on J^T J (J^T u by
autograd, J v by a double backward) estimate v; the start is +eps v or -eps v, whichever gives
the larger true error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrobust.attacks._ball import (
    default_generator,
    gaussian_like,
    per_sample,
    reconstruction_error,
    resolve_radius,
    scale_to_norm,
)
from ctrobust.attacks.pga import AttackResult, Reconstructor, measurement_pga


def top_right_singular_vector(
    f: Reconstructor, y: Tensor, *, steps: int = 8, generator: torch.Generator | None = None
) -> Tensor:
    """Unit estimate of the top right singular vector of df/dy at each sample of ``y``.

    ``steps`` power iterations on J^T J from a Gaussian start. J^T u is a vector-Jacobian
    product; J v is the derivative of the (linear in u) map u -> J^T u in the direction v, a
    double backward, which works through custom autograd functions with differentiable
    backwards (the FBP's is the FBP adjoint) where ``torch.func.jvp`` does not. Samples stay
    independent as long as f treats them independently (eval mode).
    """
    y = y.detach().requires_grad_(True)
    ones = torch.ones(len(y), dtype=y.dtype, device=y.device)
    v = scale_to_norm(gaussian_like(y, default_generator(generator)), ones)
    with torch.enable_grad():
        out = f(y)
        u = torch.zeros_like(out, requires_grad=True)
        (pullback,) = torch.autograd.grad(out, y, u, create_graph=True)
        for _ in range(steps):
            (jv,) = torch.autograd.grad(pullback, u, v, retain_graph=True)
            (w,) = torch.autograd.grad(out, y, jv, retain_graph=True)
            v = scale_to_norm(w.detach(), ones)
    return v.detach()


def jacobian_start(
    f: Reconstructor,
    y: Tensor,
    x_ref: Tensor,
    radius: Tensor,
    *,
    steps: int = 8,
    generator: torch.Generator | None = None,
) -> Tensor:
    """eps_i times the Jacobian's top right singular vector, signed to increase the error."""
    v = scale_to_norm(top_right_singular_vector(f, y, steps=steps, generator=generator), radius)
    with torch.no_grad():
        plus = reconstruction_error(f(y + v), x_ref)
        minus = reconstruction_error(f(y - v), x_ref)
    return torch.where(per_sample(plus >= minus, y), v, -v)


def pga_from_jacobian(
    f: Reconstructor,
    y: Tensor,
    x_ref: Tensor,
    eps: float | Tensor,
    *,
    relative: bool = False,
    steps: int = 8,
    generator: torch.Generator | None = None,
    **pga_options,
) -> AttackResult:
    """:func:`measurement_pga` whose first run starts at :func:`jacobian_start`."""
    radius = resolve_radius(eps, y, relative)
    start = jacobian_start(f, y, x_ref, radius, steps=steps, generator=generator)
    return measurement_pga(f, y, x_ref, radius, generator=generator, initial=start, **pga_options)
