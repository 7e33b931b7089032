"""Plain supervised training of FBPConvNet's image network as an ignite Engine.

The FBP is fixed, so the network is trained on cached FBP images against the
1000-view ground truth (MSE). Weight decay and the Parseval penalty of Raj et al.
are selected by passing ``penalty`` and the optimiser's weight decay.
Randomness (shuffling, augmentation) is derived from (seed, epoch, iteration),
so a run resumed from a checkpoint sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from ignite.engine import Engine, Events
from ignite.metrics import PSNR, SSIM
from torch import nn

from ctrobust.batches import PrepareBatch, prepare_pair
from ctrobust.metrics import DATA_RANGE

Penalty = Callable[[nn.Module], torch.Tensor]


def random_dihedral(*images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Apply one random flip/rot90 (of the 8) to every tensor alike, per batch.

    Valid for parallel-beam CT: rotating or mirroring the object permutes views
    and detector bins, so input/target pairs stay physically consistent.
    """
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    out = []
    for image in images:
        image = torch.rot90(image, k, dims=(-2, -1))
        out.append(torch.flip(image, dims=(-1,)) if flip else image)
    return tuple(out)


def create_image_trainer(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    seed: int,
    augment: bool = True,
    penalty: Penalty | None = None,
    prepare_batch: PrepareBatch = prepare_pair,
    non_blocking: bool = False,
) -> Engine:
    """Engine whose step is one MSE update of the image network on (fbp_image, ground_truth).

    Not ignite's ``create_supervised_trainer``: the step adds the seeded augmentation and
    the scheme's penalty. ``prepare_batch(batch, device, non_blocking)`` has ignite's
    signature. ``engine.state.output`` holds ``loss`` (what the network minimised),
    ``loss_clean`` (the per-pixel MSE) and ``penalty``, the keys of the adversarial trainer.
    """

    def update(engine: Engine, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        net.train()
        x_in, x_gt = prepare_batch(batch, device, non_blocking)
        if augment:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + engine.state.iteration)
            x_in, x_gt = random_dihedral(x_in, x_gt, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        mse = torch.mean((net(x_in) - x_gt) ** 2)
        reg = penalty(net) if penalty is not None else torch.zeros((), device=device)
        loss = mse + reg
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "loss_clean": mse.item(), "penalty": reg.item()}

    return Engine(update)


class EpochAware(Protocol):
    def set_epoch(self, epoch: int) -> None: ...


def attach_epoch_seeding(engine: Engine, sampler: EpochAware) -> None:
    """Tell the sampler which epoch is starting (also after a resume)."""

    @engine.on(Events.EPOCH_STARTED)
    def _set_epoch(engine: Engine) -> None:
        sampler.set_epoch(engine.state.epoch)


def create_evaluator(net: nn.Module, *, device: torch.device) -> Engine:
    """Engine computing PSNR and SSIM (ignite metrics, data range 2000 HU) of net(fbp)."""

    def step(engine: Engine, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        with torch.no_grad():
            x_in, x_gt = prepare_pair(batch, device, False)
            return net(x_in), x_gt

    evaluator = Engine(step)
    PSNR(data_range=DATA_RANGE).attach(evaluator, "psnr")
    SSIM(data_range=DATA_RANGE).attach(evaluator, "ssim")
    return evaluator
