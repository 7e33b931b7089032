"""Multi-process helpers on top of ignite.distributed (gloo on the CPU, nccl on GPUs).

A run with ``--nproc-per-node N`` (or under torchrun) executes the same pipeline in
every process: training and attacks are sharded, everything else runs on rank 0
while the others wait, and only rank 0 writes to the run folder. With one process
every helper here is a no-op, so single-process code paths stay plain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from torch import nn
from torch.utils.data import Sampler


def world_size() -> int:
    return idist.get_world_size()


def rank() -> int:
    return idist.get_rank()


def is_main() -> bool:
    """True in the process that writes outputs (rank 0, or the only process)."""
    return idist.get_rank() == 0


def barrier() -> None:
    if idist.get_world_size() > 1:
        idist.barrier()


def backend_for(device: torch.device) -> str:
    """nccl for CUDA devices, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def launch(fn: Callable[..., Any], *args: Any, nproc_per_node: int | None, backend: str) -> None:
    """Run ``fn(local_rank, *args)`` in ``nproc_per_node`` processes, or under torchrun's env.

    With ``nproc_per_node`` None and no torchrun environment, ``fn`` runs in this process.
    """
    with idist.Parallel(backend=backend, nproc_per_node=nproc_per_node) as parallel:
        parallel.run(fn, *args)


def distribute_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP-wrap ``model`` when several processes run; the same module otherwise.

    On CUDA BatchNorm becomes SyncBatchNorm; on the CPU (gloo) PyTorch has no
    SyncBatchNorm, so BatchNorm statistics stay per process.
    """
    if world_size() == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return idist.auto_model(model)


def shard(items: Sequence[int]) -> list[int]:
    """This process's share of ``items``: every world_size-th item from its rank."""
    return list(items)[rank() :: world_size()]


def gather_rows(local: torch.Tensor, local_rows: Sequence[int], total: int) -> torch.Tensor:
    """Reassemble a tensor sharded by :func:`shard` into the full (total, ...) tensor everywhere."""
    if world_size() == 1:
        return local
    width = -(-total // world_size())
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype)
    padded[: local.shape[0]] = local.cpu()
    rows = torch.full((width,), -1, dtype=torch.long)
    rows[: len(local_rows)] = torch.as_tensor(list(local_rows), dtype=torch.long)
    all_values = idist.all_gather(padded)
    all_rows = idist.all_gather(rows)
    out = torch.zeros((total, *local.shape[1:]), dtype=local.dtype)
    keep = all_rows >= 0
    out[all_rows[keep]] = all_values[keep]
    return out


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of one shuffled order shared by all ranks; each rank takes its part of each batch.

    Shuffling is seeded by (seed, epoch) so resumed runs see the same batches. A global
    batch of ``batch_size`` is split rank-wise (``batch[rank::world]``), so with a mean
    loss and DDP's gradient averaging an N-process step equals the one-process step
    (up to BatchNorm statistics, which are per process on the CPU). A last batch smaller
    than the world size is dropped so that no rank gets an empty batch.
    """

    def __init__(self, length: int, batch_size: int, seed: int) -> None:
        self.length, self.batch_size, self.seed, self.epoch = length, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, self.length, self.batch_size)]
        return [b for b in batches if len(b) >= world_size()]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            yield batch[rank() :: world_size()]

    def __len__(self) -> int:
        return len(self._global_batches())
