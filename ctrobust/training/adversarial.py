"""Adversarial G/f training of Raj et al. (eq. 6, Algorithm 1) as an ignite Engine.

Objective (eq. 6), with lam2 < 0::

    min_f max_G  E ||f(y) - x||^2 + lam1 ||f(y + G(y)) - x||^2 + lam2 max(0, ||G(y)||^2 - eps^2)

One iteration on a minibatch (y, x) (Algorithm 1):

1. Split the batch into ``k_parts`` parts. For each part, G takes ``g_steps`` ascent steps
   on ``lam1 ||f(y + G(y)) - x||^2 + lam2 max(0, ||G(y)||^2 - eps^2)`` with f fixed, and
   the part's perturbations *after* that update are kept (detached). G carries over from
   part to part and from batch to batch.
2. f takes one descent step on the whole batch on
   ``||f(y) - x||^2 + lam1 ||f(y + delta) - x||^2`` (+ optional Parseval / weight penalty).

During the first ``warmup_epochs`` epochs only the clean term trains f and G is idle.

Conventions (documented choices):

* Norms are per sample, then averaged over the batch. ``reduction="sum"`` is the paper's
  objective itself: squared l2 norms. ``reduction="mean"`` divides every term of eq. 6 (both
  reconstruction terms *and* the hinge) by the number of elements of one image x, i.e. it is
  the paper's objective times one constant: the reconstruction terms become per-pixel MSE (the
  scale of the supervised trainer) and lam1, lam2 keep the paper's meaning whatever the
  reduction. (Before, only the reconstruction terms were divided, so |lam2| / lam1 was the
  pixel count times the paper's ratio: 16 384 at n = 128.)
* The hinge is ``max(0, ||G(y)||^2 - eps^2)``: the paper writes ``- eps`` against the squared
  norm, but states the constraint as ||G(y)||_2 <= eps and evaluates robustness on the
  eps-ball (eq. 7), so eps^2 puts the kink exactly on that ball. For an f whose loss grows
  at most quadratically in the perturbation (e.g. a linear f = B) the hinge is an exact
  penalty once |lam2| > lam1 ||B||_2^2: the maximiser then lies on the ball.
* ``relative_eps=True`` makes the budget per sample ``eps * ||y_i||``.
* While G ascends, f is put in eval mode (BatchNorm running statistics, no dropout): G
  attacks the reconstructor as it is deployed, and its extra forward passes do not
  move BatchNorm statistics. f's own step runs in train mode.
* ``flush_denormal=True`` flushes subnormal floats to zero on the CPU while the engine runs
  (the flag is restored to what it was when the engine completes or fails). Adam's first
  moment with the paper's beta1 = 0.5 halves every step for weights with zero gradient
  (dead ReLU units of G), reaching subnormal numbers after ~1000 steps; CPU arithmetic on
  them is 10-30x slower (measured: a linear-theory epoch with an MLP G went from 4 s to
  100-200 s). Values are unchanged to ~1e-308. The flag is per thread and only the calling
  thread's is set: intra-op worker threads started earlier keep subnormals (a caller on the
  CPU can set it at process start, before torch starts its thread pool, or run tiny models
  single-threaded).
* The optimisers are built by the caller; the paper uses Adam(lr=1e-4, betas=(0.5, 0.999))
  for both (``paper_adam``). Adam is invariant to a constant factor on the loss, so with it
  the two reductions give the same iterates (up to Adam's epsilon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from torch import nn

from ctrobust.batches import PrepareBatch, prepare_pair
from ctrobust.runtime import flushing_denormals
from ctrobust.training.regularizers import parseval_penalty, weight_penalty

Batch = Sequence[torch.Tensor]
Reduction = Literal["sum", "mean"]


def paper_adam(params, lr: float = 1e-4, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam(betas=(0.5, 0.999)) as used by Raj et al. for f and G."""
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)


def per_sample_sq_error(
    pred: torch.Tensor, target: torch.Tensor, reduction: Reduction
) -> torch.Tensor:
    """Squared error of each sample, summed or averaged over its elements: shape (B,)."""
    err = (pred - target).flatten(1) ** 2
    return err.sum(1) if reduction == "sum" else err.mean(1)


def per_sample_sq_norm(t: torch.Tensor) -> torch.Tensor:
    """||t_i||^2 of each sample: shape (B,)."""
    return (t.flatten(1) ** 2).sum(1)


def reduction_scale(x: torch.Tensor, reduction: Reduction) -> float:
    """Factor that turns eq. 6's squared norms into the engine's units: 1 for ``"sum"``,
    1 / (elements of one image) for ``"mean"``, the factor :func:`per_sample_sq_error` applies
    to the reconstruction terms, so applying it to the hinge too keeps lam1 and lam2 the
    paper's values."""
    return 1.0 if reduction == "sum" else 1.0 / x[0].numel()


def per_sample_hinge(
    delta: torch.Tensor, budget_sq: torch.Tensor, x: torch.Tensor, reduction: Reduction
) -> torch.Tensor:
    """max(0, ||delta_i||^2 - budget_i^2) of each sample in the engine's units: shape (B,)."""
    return torch.relu(per_sample_sq_norm(delta) - budget_sq) * reduction_scale(x, reduction)


def create_adversarial_trainer(
    f: nn.Module,
    G: nn.Module,
    opt_f: torch.optim.Optimizer,
    opt_G: torch.optim.Optimizer,
    *,
    eps: float,
    lam1: float = 1.0,
    lam2: float = -1.0,
    k_parts: int = 4,
    g_steps: int = 1,
    warmup_epochs: int = 0,
    device: torch.device | str = "cpu",
    parseval_beta: float = 0.0,
    weight_mu: float = 0.0,
    relative_eps: bool = False,
    reduction: Reduction = "sum",
    prepare_batch: PrepareBatch = prepare_pair,
    non_blocking: bool = False,
    flush_denormal: bool = True,
) -> Engine:
    """Engine whose step is Algorithm 1 on a batch (y, x); f maps y -> x (any nn.Module).

    ``prepare_batch(batch, device, non_blocking) -> (y, x)`` (ignite's signature) takes a
    loader batch to the device.

    ``engine.state.output`` is a dict of floats: ``loss`` (what f minimised), ``loss_clean``
    and ``penalty`` (its clean and regulariser terms, the keys of the supervised trainer too),
    ``adversarial`` (0 in warm-up, 1 after) and, in adversarial epochs, ``loss_adv``,
    ``g_objective`` (G's objective on the last part, after its update), ``g_norm_mean``,
    ``g_norm_max``, ``share_over_eps`` (share of samples with ||G(y)|| > budget * (1 + 1e-6),
    so that outputs projected onto the sphere do not count by rounding),
    ``g_updates`` (optimiser steps of G in this iteration). ``attach_epoch_means`` turns
    them into per-epoch ``engine.state.metrics``.
    """
    if lam2 >= 0:
        raise ValueError(f"lam2 must be negative (hinge penalty), got {lam2}")
    if k_parts < 1 or g_steps < 1:
        raise ValueError("k_parts and g_steps must be >= 1")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    device = torch.device(device)
    g_params = [p for p in G.parameters() if p.requires_grad]

    def penalty() -> torch.Tensor:
        reg = torch.zeros((), device=device)
        if parseval_beta:
            reg = reg + parseval_penalty(f, parseval_beta)
        if weight_mu:
            reg = reg + weight_penalty(f, weight_mu)
        return reg

    def f_step(y: torch.Tensor, x: torch.Tensor, delta: torch.Tensor | None) -> dict[str, float]:
        f.train()
        opt_f.zero_grad(set_to_none=True)
        clean = per_sample_sq_error(f(y), x, reduction).mean()
        reg = penalty()
        loss = clean + reg
        out = {"loss_clean": float(clean.detach()), "penalty": float(reg.detach())}
        if delta is not None:
            adv = per_sample_sq_error(f(y + delta), x, reduction).mean()
            loss = loss + lam1 * adv
            out["loss_adv"] = float(adv.detach())
        loss.backward()
        opt_f.step()
        out["loss"] = float(loss.detach())
        return out

    def g_ascent(y: torch.Tensor, x: torch.Tensor, budget_sq: torch.Tensor) -> torch.Tensor:
        """g_steps ascent steps of G on one part; returns its objective after the update."""
        for _ in range(g_steps):
            opt_G.zero_grad(set_to_none=True)
            objective = _g_objective(y, x, budget_sq)
            (-objective).backward(inputs=g_params)
            opt_G.step()
        with torch.no_grad():
            return _g_objective(y, x, budget_sq)

    def _g_objective(y: torch.Tensor, x: torch.Tensor, budget_sq: torch.Tensor) -> torch.Tensor:
        delta = G(y)
        rec = per_sample_sq_error(f(y + delta), x, reduction)
        hinge = per_sample_hinge(delta, budget_sq, x, reduction)
        return (lam1 * rec + lam2 * hinge).mean()

    def update(engine: Engine, batch: Batch) -> dict[str, float]:
        y, x = prepare_batch(batch, device, non_blocking)
        if engine.state.epoch <= warmup_epochs:
            return {"adversarial": 0.0, **f_step(y, x, None)}

        budget_sq = (
            eps**2 * per_sample_sq_norm(y)
            if relative_eps
            else torch.full((y.shape[0],), eps**2, dtype=y.dtype, device=y.device)
        )
        was_training = f.training
        f.eval()
        deltas, objective = [], torch.zeros(())
        for idx in torch.tensor_split(torch.arange(y.shape[0], device=device), k_parts):
            if idx.numel() == 0:
                continue
            objective = g_ascent(y[idx], x[idx], budget_sq[idx])
            with torch.no_grad():
                deltas.append(G(y[idx]).clone())  # a copy: G may return a view of its weights
        f.train(was_training)
        delta = torch.cat(deltas).detach()

        norms = per_sample_sq_norm(delta).sqrt()
        over = norms > budget_sq.sqrt() * (1 + 1e-6)
        out = {"adversarial": 1.0, **f_step(y, x, delta)}
        out.update(
            g_objective=float(objective),
            g_norm_mean=float(norms.mean()),
            g_norm_max=float(norms.max()),
            share_over_eps=float(over.float().mean()),
            g_updates=float(len(deltas) * g_steps),
        )
        return out

    engine = Engine(update)
    if flush_denormal:
        _flush_denormals_while_running(engine)
    return engine


def _flush_denormals_while_running(engine: Engine) -> None:
    """Flush subnormals from STARTED until COMPLETED or an exception, then restore the flag as
    it was (a pipeline run flushes for the whole process, and later stages keep that)."""
    before: list[bool] = []

    def start(_: Engine) -> None:
        before[:] = [flushing_denormals()]
        torch.set_flush_denormal(True)

    def restore(_: Engine) -> None:
        torch.set_flush_denormal(before[0] if before else False)

    def restore_and_raise(engine: Engine, error: BaseException) -> None:
        restore(engine)
        raise error

    engine.add_event_handler(Events.STARTED, start)
    engine.add_event_handler(Events.COMPLETED, restore)
    engine.add_event_handler(Events.EXCEPTION_RAISED, restore_and_raise)


class EpochMeans(Metric):
    """Per-epoch mean of every numeric key of ``engine.state.output`` (keys may come and go)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        # a 1-tuple: ignite would otherwise read a mapping output as {"y_pred", "y"}
        super().__init__(output_transform=lambda out: (out,), metrics_result_mode="flatten")

    def reset(self) -> None:
        self._sums, self._counts = {}, {}

    def update(self, output: tuple[Mapping[str, float]]) -> None:
        for key, value in output[0].items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
            self._counts[key] = self._counts.get(key, 0) + 1

    def compute(self) -> dict[str, float]:
        return {k: self._sums[k] / self._counts[k] for k in self._sums}


def attach_epoch_means(engine: Engine, name: str = "epoch_means") -> None:
    """Put the epoch means of the step outputs into ``engine.state.metrics`` (flattened)."""
    EpochMeans().attach(engine, name)
