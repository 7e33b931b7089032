"""Sinogram-domain worst-case attack: projected gradient ascent on the l2 ball (Raj et al. eq. 7).

Delta_max(x, eps) = max_{||delta||_2 <= eps} ||f(y + delta) - x||_2 is estimated per sample by
normalised-gradient ascent with momentum, projected back onto the ball after every step; the best
iterate seen (including delta = 0) is kept, so the estimate never falls below the clean error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ctrobust.attacks._ball import (
    default_generator,
    gaussian_like,
    per_sample,
    project_l2_ball,
    random_in_ball,
    reconstruction_error,
    resolve_radius,
    sample_norms,
)

Reconstructor = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class AttackResult:
    """Outcome of a sinogram-domain attack on a batch; tensors are detached and batch-first.

    Attributes:
        delta: best perturbation found per sample, shaped like y, ||delta_i|| <= eps_i.
        error: Delta = ||f(y + delta) - x||_2 per sample, (B,).
        clean_error: ||f(y) - x||_2 per sample, (B,).
        eps: absolute l2 radius used per sample, (B,).
        reconstruction: f(y + delta), shaped like x.
        iterations: gradient steps taken per sample over all starts (a sample stopped early by
            ``tol`` counts only its own steps), (B,).
        best_evaluation: which call of f gave ``error`` per sample, (B,): 0 is the clean
            f(y), k the k-th evaluation after it (all starts one after the other, one call of
            f each; calls made before this function, e.g. for a Jacobian start, are not
            counted), so a caller that records what f did on each call can look up the
            reported point's record instead of evaluating f there again.
        trace: error of the current iterate at every evaluation, all starts one after the
            other, (B, T); None unless requested.
    """

    delta: Tensor
    error: Tensor
    clean_error: Tensor
    eps: Tensor
    reconstruction: Tensor
    iterations: Tensor
    best_evaluation: Tensor
    trace: Tensor | None = None


def _inverse_norms(t: Tensor) -> Tensor:
    """1 / ||t_i|| per sample, (B,), and 0 for a vanishing sample (which then stays zero)."""
    norms = sample_norms(t)
    ok = norms > torch.finfo(t.dtype).tiny
    return torch.where(ok, 1.0 / torch.where(ok, norms, 1.0), 0.0)


def _unit(t: Tensor, fallback: Tensor) -> Tensor:
    """Each sample scaled to unit l2 norm; a vanishing sample is replaced by ``fallback``'s."""
    inverse = _inverse_norms(t)
    return torch.where(per_sample(inverse > 0, t), t * per_sample(inverse, t), fallback)


def _stalled(history: list[Tensor], patience: int, tol: float) -> Tensor:
    """Per sample, (B,): the best error grew by at most ``tol`` (relative) in ``patience`` steps."""
    if len(history) <= patience:
        return torch.zeros_like(history[-1], dtype=torch.bool)
    now, before = history[-1], history[-1 - patience]
    return now <= before * (1.0 + tol)


def measurement_pga(
    f: Reconstructor,
    y: Tensor,
    x_true: Tensor,
    eps: float | Tensor,
    *,
    n_iter: int = 50,
    step: float = 1.0,
    momentum: float = 0.5,
    relative: bool = False,
    random_start: bool = False,
    restarts: int = 0,
    generator: torch.Generator | None = None,
    tol: float | None = None,
    patience: int = 10,
    record_trace: bool = False,
    initial: Tensor | None = None,
) -> AttackResult:
    """Estimate the worst-case error within an l2 ball around each measurement (Raj eq. 7).

    Each step: g = grad_delta 1/2 ||f(y + delta) - x||^2 (w.r.t. delta only, so nothing is
    accumulated in f's parameters), normalised per sample; v <- momentum * v + g; delta <-
    P_ball(delta + step_abs * v / ||v||). The loss is a sum over the batch, so samples stay
    independent as long as f treats them independently (beware BatchNorm in train mode: the
    caller decides f's mode).

    Args:
        f: differentiable map from sinograms (B,1,V,D) to images (B,1,N,N).
        y: clean measurements (B,1,V,D).
        x_true: reference images (B,1,N,N).
        eps: l2 radius, a float or a (B,) tensor; absolute, or relative to ||y_i|| if
            ``relative`` (eps_abs = eps * ||y_i||).
        n_iter: gradient steps per start.
        step: step length as a fraction of eps_abs. Long steps win here: the ascent behaves like
            a power iteration on the sphere (see docs/attacks.md for the measurements).
        momentum: weight of the previous direction (0 gives plain normalised PGA); 0.9 was
            measured 2-4 % weaker than 0.5 at 50 iterations.
        relative: interpret eps relative to each sample's ||y||.
        random_start: start the first run at a uniform point of the ball instead of 0.
        restarts: extra runs from random points of the ball; the best over all runs is kept.
        generator: source of the random starts and of the fallback direction taken where the
            gradient vanishes at a run's start (e.g. f(y) == x exactly); None means a CPU
            generator seeded 0.
        tol: a sample stops (its delta is frozen and its iterations no longer counted) once
            its best error in the run grew by at most ``tol`` (relative) over the last
            ``patience`` steps; the run ends when every sample has stopped. None runs all
            ``n_iter`` steps.
        patience: window of the early-stop test.
        record_trace: keep the error of every iterate in ``AttackResult.trace``.
        initial: start of the first run instead of 0, projected onto the ball (e.g.
            :func:`ctrobust.attacks.jacobian_start.jacobian_start`); overrides ``random_start``
            for that run.

    Returns:
        AttackResult with the best delta per sample and its error.
    """
    if n_iter < 0 or restarts < 0 or patience < 1:
        raise ValueError("n_iter and restarts must be >= 0 and patience >= 1")
    y, x_true = y.detach(), x_true.detach()
    radius = resolve_radius(eps, y, relative)
    step_abs = radius * step
    gen = default_generator(generator)

    with torch.no_grad():
        best_recon = f(y).detach()
    clean_error = reconstruction_error(best_recon, x_true)
    best_error = clean_error.clone()
    best_delta = torch.zeros_like(y)
    iterations = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    best_evaluation = torch.zeros_like(iterations)
    evaluations = 0
    trace: list[Tensor] = []

    for run in range(restarts + 1):
        if run == 0 and initial is not None:
            delta = project_l2_ball(initial.detach().to(y), radius)
        elif random_start or run > 0:
            delta = random_in_ball(y, radius, gen)
        else:
            delta = torch.zeros_like(y)
        fallback = _unit(gaussian_like(y, gen), torch.zeros_like(y))
        run_best: list[Tensor] = []
        active = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
        for k in range(n_iter + 1):
            last = k == n_iter
            with torch.set_grad_enabled(not last):
                delta.requires_grad_(not last)
                recon = f(y + delta)
                squares = (recon - x_true).pow(2).flatten(1).sum(dim=1)
                if not last:
                    (grad,) = torch.autograd.grad(0.5 * squares.sum(), delta)
            recon, delta = recon.detach(), delta.detach()
            error = squares.detach().sqrt()
            evaluations += 1
            better = error > best_error
            best_evaluation.masked_fill_(better, evaluations)
            best_error = torch.where(better, error, best_error)
            best_delta = torch.where(per_sample(better, y), delta, best_delta)
            best_recon = torch.where(per_sample(better, recon), recon, best_recon)
            if record_trace:
                trace.append(error)
            if last:
                break
            if tol is not None:
                run_best.append(torch.maximum(run_best[-1], error) if run_best else error)
                active &= ~_stalled(run_best, patience, tol)
                if not bool(active.any()):
                    break
            if k == 0:  # only a start sits exactly on a stationary point (f(y) == x)
                velocity = _unit(grad, fallback)
            else:  # v <- momentum v + g / ||g||, in place: no extra pass over the batch
                velocity.mul_(momentum).addcmul_(grad, per_sample(_inverse_norms(grad), grad))
            scale = per_sample(step_abs * _inverse_norms(velocity), y)
            stepped = project_l2_ball(torch.addcmul(delta, velocity, scale), radius)
            delta = torch.where(per_sample(active, y), stepped, delta)
            iterations += active

    return AttackResult(
        delta=best_delta,
        error=best_error,
        clean_error=clean_error,
        eps=radius,
        reconstruction=best_recon,
        iterations=iterations,
        best_evaluation=best_evaluation,
        trace=torch.stack(trace, dim=1) if record_trace else None,
    )
