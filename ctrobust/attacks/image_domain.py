"""Antun et al.'s image-domain instability test: tiny worst-case r with y + A r, and its control.

r maximises Q(r) = 1/2 ||f(y + A r) - x||^2 - lam/2 ||r||^2 by gradient ascent with (heavy-ball)
momentum. The ascent is stopped early at three iterates r1, r2, r3 of increasing norm, which show
how the artefact grows; :func:`gaussian_control` then adds noise of norm ||r1||/4 to r1 to test
whether the artefact survives (Antun Fig. 2: the instability is itself stable). As in Fig. 2 the
noise is drawn in the measurement space and brought to the image by the adjoint, v = A^T e;
white image-domain noise is kept as a labelled variant.

Antun's own form measures ||f(y + A r) - f(y)||; pass ``x_true = f(y)`` to get it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ctrobust.attacks._ball import (
    default_generator,
    gaussian_like,
    per_sample,
    reconstruction_error,
    sample_norms,
    scale_to_norm,
)
from ctrobust.attacks.pga import Reconstructor

ForwardOp = Callable[[Tensor], Tensor]
NoiseSpace = Literal["measurement", "image"]

#: Number of early-stopped iterates returned (r1 < r2 < r3).
N_RECORDED = 3


@dataclass(frozen=True)
class ImageDomainResult:
    """Early-stopped iterates of the ascent on Q; tensors detached and batch-first.

    A slot that the ascent never reached (the norm stayed below its level, as for a stable
    network with lam above its gain) has ``reached`` False, NaN norm and error, iteration -1 and
    zero perturbation and reconstruction.

    Attributes:
        perturbations: r1, r2, r3 per sample, (B, 3, 1, N, N), strictly increasing in norm.
        norms: ||r_j|| per sample, (B, 3).
        errors: ||f(y + A r_j) - x|| per sample, (B, 3).
        reconstructions: f(y + A r_j), (B, 3, 1, N, N).
        iterations: iteration at which each r_j was taken, (B, 3).
        reached: whether each slot was filled, (B, 3).
        clean_error: ||f(y) - x|| per sample, (B,).
        norm_trace: ||r_k|| for every iterate k run, (B, K + 1).
        error_trace: ||f(y + A r_k) - x|| for every iterate k run, (B, K + 1).
    """

    perturbations: Tensor
    norms: Tensor
    errors: Tensor
    reconstructions: Tensor
    iterations: Tensor
    reached: Tensor
    clean_error: Tensor
    norm_trace: Tensor
    error_trace: Tensor


@dataclass(frozen=True)
class GaussianControlResult:
    """Errors with r1 alone, with r1 + v (||v|| = scale ||r1||) and with v alone; batch-first.

    Attributes:
        space: where the noise was drawn: ``"measurement"`` (v = A^T e, e ~ N(0, I) on the
            sinogram, Antun Fig. 2) or ``"image"`` (v white Gaussian on the pixels).
        error_without: ||f(y + A r1) - x||, (B,).
        error_with: ||f(y + A (r1 + v)) - x||, (B,).
        error_noise_only: ||f(y + A v) - x||, (B,): what the noise does by itself.
        noise: the image-domain perturbation v, shaped like r1.
        reconstruction_with: f(y + A (r1 + v)).
    """

    space: NoiseSpace
    error_without: Tensor
    error_with: Tensor
    error_noise_only: Tensor
    noise: Tensor
    reconstruction_with: Tensor


def _check_schedule(n_iter: int, levels: Sequence[float], record_at: Sequence[int] | None) -> None:
    """Validate the recording schedule: three strictly increasing levels or iterations."""
    points = list(levels) if record_at is None else list(record_at)
    if len(points) != N_RECORDED or any(b <= a for a, b in zip(points, points[1:], strict=False)):
        raise ValueError(f"need {N_RECORDED} strictly increasing levels or record_at iterations")
    if record_at is None and points[0] <= 0:
        raise ValueError("levels must be positive")
    if record_at is not None and (points[0] < 1 or points[-1] > n_iter):
        raise ValueError(f"record_at iterations must lie in 1..{n_iter}")


def image_domain_ascent(
    f: Reconstructor,
    forward_op: ForwardOp,
    y: Tensor,
    x_true: Tensor,
    lam: float,
    *,
    step: float = 0.01,
    n_iter: int = 200,
    momentum: float = 0.9,
    levels: Sequence[float] = (0.01, 0.02, 0.04),
    record_at: Sequence[int] | None = None,
    init_scale: float = 1e-3,
    generator: torch.Generator | None = None,
) -> ImageDomainResult:
    """Gradient ascent with momentum on Q(r) = 1/2 ||f(y + A r) - x||^2 - lam/2 ||r||^2.

    v <- momentum * v + grad Q(r); r <- r + step * v (gradient w.r.t. r only), from a small
    Gaussian r0 of norm ``init_scale * ||x_i||`` so that the ascent also leaves r = 0 where
    f(y) == x. The iterates grow roughly geometrically wherever the gain of r -> f(y + A r)
    exceeds sqrt(lam), so they are stopped early (Antun et al.):

    - by default r_j is, per sample, the first iterate with ||r|| >= levels[j] * ||x_i||, and the
      ascent ends once every sample has passed the last level (or after ``n_iter``);
    - with ``record_at``, r_j is the iterate after record_at[j] steps for every sample.

    Either way ||r1|| < ||r2|| < ||r3|| is checked per sample; a step so long that one iterate
    jumps over two levels, or iterations whose norms do not increase, raise ValueError.

    Args:
        f: differentiable map from sinograms (B,1,V,D) to images (B,1,N,N).
        forward_op: differentiable image -> sinogram map (e.g. ``op.A``).
        y: clean measurements (B,1,V,D).
        x_true: reference images (B,1,N,N); ``f(y)`` gives Antun's ||f(y + A r) - f(y)||.
        lam: weight of the ||r||^2 penalty; r grows along directions of gain above sqrt(lam).
        step: gradient step. Q's curvature is the squared gain of r -> f(y + A r), of order 1
            to 10 for an FBP-based network (f(A x) ~ x), so 0.01 with momentum 0.9 grows r by a
            few percent per iteration there; rescale for reconstructors of other gain.
        n_iter: maximum ascent iterations.
        momentum: heavy-ball weight.
        levels: norms of r1, r2, r3 as fractions of ||x_i|| (default 1 %, 2 %, 4 %).
        record_at: three increasing iterations in 1..n_iter, used instead of ``levels``.
        init_scale: norm of r0 relative to ||x_i||.
        generator: source of r0; None means a CPU generator seeded 0.
    """
    _check_schedule(n_iter, levels, record_at)
    y, x_true = y.detach(), x_true.detach()
    gen = default_generator(generator)
    x_norm = sample_norms(x_true)

    with torch.no_grad():
        clean_error = reconstruction_error(f(y), x_true)
    r = scale_to_norm(gaussian_like(x_true, gen), init_scale * x_norm)
    batch = r.shape[0]
    kept_r = torch.zeros((batch, N_RECORDED, *r.shape[1:]), dtype=r.dtype, device=r.device)
    kept_recon = torch.zeros(
        (batch, N_RECORDED, *x_true.shape[1:]), dtype=x_true.dtype, device=x_true.device
    )
    kept_error = torch.full((batch, N_RECORDED), float("nan"), dtype=r.dtype, device=r.device)
    kept_norm = kept_error.clone()
    kept_iter = torch.full((batch, N_RECORDED), -1, dtype=torch.long, device=r.device)
    velocity = torch.zeros_like(r)
    norm_trace, error_trace = [], []
    for k in range(n_iter + 1):
        last = k == n_iter
        with torch.set_grad_enabled(not last):
            r.requires_grad_(not last)
            recon = f(y + forward_op(r))
            if not last:
                q = 0.5 * (recon - x_true).pow(2).sum() - 0.5 * lam * r.pow(2).sum()
                (grad,) = torch.autograd.grad(q, r)
        r, recon = r.detach(), recon.detach()
        error, norm = reconstruction_error(recon, x_true), sample_norms(r)
        norm_trace.append(norm)
        error_trace.append(error)
        for j in range(N_RECORDED):
            if record_at is None:
                take = (kept_iter[:, j] < 0) & (norm >= levels[j] * x_norm)
            else:
                take = torch.full_like(norm, k == record_at[j], dtype=torch.bool)
            kept_r[:, j] = torch.where(per_sample(take, r), r, kept_r[:, j])
            kept_recon[:, j] = torch.where(per_sample(take, recon), recon, kept_recon[:, j])
            kept_error[:, j] = torch.where(take, error, kept_error[:, j])
            kept_norm[:, j] = torch.where(take, norm, kept_norm[:, j])
            kept_iter[:, j] = torch.where(take, k, kept_iter[:, j])
        done = k == record_at[-1] if record_at is not None else bool((kept_iter[:, -1] >= 0).all())
        if last or done:
            break
        velocity = momentum * velocity + grad
        r = r + step * velocity

    reached = kept_iter >= 0
    both = reached[:, 1:] & reached[:, :-1]
    if bool((both & (kept_norm[:, 1:] <= kept_norm[:, :-1])).any()):
        raise ValueError(
            f"recorded norms are not strictly increasing ({kept_norm.tolist()} at iterations "
            f"{kept_iter.tolist()}): shorten step or spread levels / record_at"
        )
    return ImageDomainResult(
        perturbations=kept_r,
        norms=kept_norm,
        errors=kept_error,
        reconstructions=kept_recon,
        iterations=kept_iter,
        reached=reached,
        clean_error=clean_error,
        norm_trace=torch.stack(norm_trace, dim=1),
        error_trace=torch.stack(error_trace, dim=1),
    )


def _adjoint_of(forward_op: ForwardOp, like_image: Tensor) -> ForwardOp:
    """A^T of a linear, differentiable ``forward_op`` by autograd (exact for a linear map)."""

    def adjoint(e: Tensor) -> Tensor:
        with torch.enable_grad():
            probe = torch.zeros_like(like_image, requires_grad=True)
            (back,) = torch.autograd.grad(forward_op(probe), probe, grad_outputs=e)
        return back

    return adjoint


@torch.no_grad()
def gaussian_control(
    r1: Tensor,
    f: Reconstructor,
    y: Tensor,
    forward_op: ForwardOp,
    x_true: Tensor,
    *,
    scale: float = 0.25,
    space: NoiseSpace = "measurement",
    adjoint_op: ForwardOp | None = None,
    generator: torch.Generator | None = None,
) -> GaussianControlResult:
    """Antun Fig. 2 control: add Gaussian v with ||v_i|| = scale * ||r1_i|| to r1.

    If the error with r1 + v stays close to the error with r1 (and well above the error with v
    alone), the artefact is not a knife-edge: a ball of perturbations around r1 produces it.

    ``space="measurement"`` follows Fig. 2: e ~ N(0, I) shaped like y, v = A^T e (for CT a
    low-pass image: back projection smooths), then rescaled. ``space="image"`` draws v as white
    pixel noise, which A mostly maps to high detector frequencies; both pass through A like r1.

    Args:
        r1: image-domain perturbation (B,1,N,N), e.g. ``result.perturbations[:, 0]``.
        f: reconstructor, sinogram -> image.
        y: clean measurements (B,1,V,D).
        forward_op: image -> sinogram map (linear, e.g. ``op.A``).
        x_true: reference images.
        scale: ||v|| / ||r1|| (Antun: 1/4).
        space: ``"measurement"`` (Fig. 2) or ``"image"`` (white pixel noise).
        adjoint_op: A^T (e.g. ``op.A_adjoint``); None takes it from ``forward_op`` by autograd.
        generator: source of the noise; None means a CPU generator seeded 0.
    """
    if space not in ("measurement", "image"):
        raise ValueError(f"space must be 'measurement' or 'image', got {space!r}")
    gen = default_generator(generator)
    if space == "measurement":
        adjoint = adjoint_op if adjoint_op is not None else _adjoint_of(forward_op, r1)
        direction = adjoint(gaussian_like(y, gen))
    else:
        direction = gaussian_like(r1, gen)
    noise = scale_to_norm(direction, scale * sample_norms(r1))
    recon_with = f(y + forward_op(r1 + noise))
    return GaussianControlResult(
        space=space,
        error_without=reconstruction_error(f(y + forward_op(r1)), x_true),
        error_with=reconstruction_error(recon_with, x_true),
        error_noise_only=reconstruction_error(f(y + forward_op(noise)), x_true),
        noise=noise,
        reconstruction_with=recon_with,
    )
