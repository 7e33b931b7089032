"""ignite engines that run one whole attack per batch and collect the results over a loader.

An attack is a function ``attack_fn(f, y, x) -> result`` (e.g. ``functools.partial(
measurement_pga, eps=0.01, relative=True)``) whose result is a dataclass of batch-first tensors.
The engine's step moves the batch to the device, runs the attack and returns the result
(``engine.state.output``); a handler keeps a CPU copy of every batch's result in
``engine.state.attack_results``. Results follow the loader's order, so use an unshuffled loader
when slices must be matched back to their source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from torch import Tensor

from ctrobust.attacks.pga import Reconstructor
from ctrobust.batches import PrepareBatch
from ctrobust.batches import prepare_pair as prepare_attack_batch

R = TypeVar("R")
AttackFn = Callable[[Reconstructor, Tensor, Tensor], Any]


def _to_cpu(result: R) -> R:
    """Copy every tensor field of a result dataclass to the CPU."""
    changes = {
        field.name: getattr(result, field.name).cpu()
        for field in dataclasses.fields(result)
        if isinstance(getattr(result, field.name), Tensor)
    }
    return dataclasses.replace(result, **changes)


def create_attack_engine(
    f: Reconstructor,
    attack_fn: AttackFn,
    device: torch.device | str,
    *,
    prepare_batch: PrepareBatch = prepare_attack_batch,
    non_blocking: bool = False,
    progress: bool = True,
) -> Engine:
    """Engine whose process function runs ``attack_fn(f, y, x)`` on each batch.

    Args:
        f: the reconstructor, already on ``device`` and in the mode the caller wants (eval for
            a fair robustness figure: BatchNorm in train mode couples the samples of a batch).
        attack_fn: ``(f, y, x) -> result dataclass`` with batch-first tensor fields, such as
            :func:`measurement_pga`, :func:`random_perturbation_baseline` or
            :func:`image_domain_ascent` with their options bound by ``functools.partial``.
            Early stopping of a PGA batch is its ``tol`` / ``patience`` option.
        device: where the batches are moved.
        prepare_batch: ``(batch, device, non_blocking) -> (y, x)``.
        non_blocking: passed to ``Tensor.to``.
        progress: attach an ignite ProgressBar over the batches.

    Returns:
        An Engine; ``engine.state.attack_results`` holds the CPU results of the last run.
    """
    device = torch.device(device)

    def step(engine: Engine, batch: Any) -> Any:
        y, x = prepare_batch(batch, device, non_blocking)
        return attack_fn(f, y, x)

    engine = Engine(step)

    @engine.on(Events.STARTED)
    def _reset(engine: Engine) -> None:
        engine.state.attack_results = []

    @engine.on(Events.ITERATION_COMPLETED)
    def _collect(engine: Engine) -> None:
        engine.state.attack_results.append(_to_cpu(engine.state.output))

    if progress:
        ProgressBar(persist=False, desc="attack").attach(engine)
    return engine


def _pad_cat(tensors: list[Tensor]) -> Tensor:
    """Concatenate along dim 0; trailing sizes that differ (e.g. traces of runs stopped early at
    different iterations) are padded at the end with NaN (floats) or -1 (integers)."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for t in tensors:
        if list(t.shape[1:]) != shape:
            fill = float("nan") if t.is_floating_point() else -1
            out = torch.full((t.shape[0], *shape), fill, dtype=t.dtype, device=t.device)
            out[tuple(slice(0, s) for s in t.shape)] = t
            t = out
        padded.append(t)
    return torch.cat(padded, dim=0)


def concat_results(results: Sequence[R]) -> R:
    """Join per-batch result dataclasses into one along the batch axis (None fields stay None)."""
    if not results:
        raise ValueError("no results to concatenate")
    first = results[0]
    joined = {}
    for field in dataclasses.fields(first):
        values = [getattr(r, field.name) for r in results]
        joined[field.name] = None if values[0] is None else _pad_cat(values)
    return type(first)(**joined)


def run_attack_over_loader(engine: Engine, loader: Iterable) -> Any:
    """Run ``engine`` once over ``loader`` and return all batches' results concatenated."""
    engine.run(loader, max_epochs=1)
    return concat_results(engine.state.attack_results)
