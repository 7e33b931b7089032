"""Plain supervised training of FBPConvNet's image network as an ignite Engine.

The FBP is fixed, so the network is trained on cached FBP images against the
1000-view ground truth (MSE). Weight decay and the Parseval penalty of Raj et al.
are selected by passing ``penalty`` and the optimiser's weight decay.
Randomness (shuffling, augmentation) is derived from (seed, epoch, iteration),
so a run resumed from a checkpoint sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from ignite.engine import Engine, Events
from ignite.metrics import PSNR, SSIM
from torch import nn

from ctrobust.batches import PrepareBatch, prepare_pair
from ctrobust.metrics import DATA_RANGE

Penalty = Callable[[nn.Module], torch.Tensor]


Symmetry = tuple[int, bool]
"""A symmetry of the pixel grid: ``k`` quarter turns (``torch.rot90``), then a left-right flip."""

_HALF_TURNS: tuple[Symmetry, ...] = ((0, False), (2, False), (0, True), (2, True))
_QUARTER_TURNS: tuple[Symmetry, ...] = ((1, False), (3, False), (1, True), (3, True))


def view_symmetries(*view_counts: int) -> tuple[Symmetry, ...]:
    """Grid symmetries that map the view set of every given view count onto itself.

    Views are uniform in [0, pi) with step pi / V (``physics.sparse_projector.view_angles``)
    and the detector is centred on the rotation axis. A flip maps the view at angle t to the
    one at pi - t and a half turn maps it to t + pi (the same line, detector reversed), so these
    four symmetries (identity, half turn, two mirrors) are exact for every V. A quarter turn
    maps t to t + pi/2, which lands on a view only when pi/2 is a whole number of view steps,
    i.e. V even; otherwise the rotated image carries the streaks of a view set shifted by half
    a step, and a network trained on it learns the wrong artefacts.
    """
    if any(v < 1 for v in view_counts):
        raise ValueError(f"view counts must be positive, got {view_counts}")
    if all(v % 2 == 0 for v in view_counts):
        return _HALF_TURNS + _QUARTER_TURNS
    return _HALF_TURNS


def apply_symmetry(image: torch.Tensor, symmetry: Symmetry) -> torch.Tensor:
    """The image (..., N, N) under ``symmetry`` (quarter turns, then an optional mirror)."""
    k, flip = symmetry
    image = torch.rot90(image, k, dims=(-2, -1)) if k else image
    return torch.flip(image, dims=(-1,)) if flip else image


def random_symmetry(
    *images: torch.Tensor, symmetries: Sequence[Symmetry], generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Apply one random symmetry of ``symmetries`` to every tensor alike, per batch.

    Pass :func:`view_symmetries` of the input's and the target's view counts so that the pair
    stays what the scanner would have measured of the transformed object.
    """
    pick = int(torch.randint(0, len(symmetries), (1,), generator=generator))
    return tuple(apply_symmetry(image, symmetries[pick]) for image in images)


def create_image_trainer(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    seed: int,
    augment: Sequence[Symmetry] = (),
    penalty: Penalty | None = None,
    prepare_batch: PrepareBatch = prepare_pair,
    non_blocking: bool = False,
) -> Engine:
    """Engine whose step is one MSE update of the image network on (fbp_image, ground_truth).

    Not ignite's ``create_supervised_trainer``: the step adds the seeded augmentation and
    the scheme's penalty. ``prepare_batch(batch, device, non_blocking)`` has ignite's
    signature. ``engine.state.output`` holds ``loss`` (what the network minimised),
    ``loss_clean`` (the per-pixel MSE) and ``penalty``, the keys of the adversarial trainer.

    ``augment`` lists the symmetries drawn from (e.g. :func:`view_symmetries` of the input
    and ground-truth view counts); empty means no augmentation.
    """

    def update(engine: Engine, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        net.train()
        x_in, x_gt = prepare_batch(batch, device, non_blocking)
        if augment:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + engine.state.iteration)
            x_in, x_gt = random_symmetry(x_in, x_gt, symmetries=augment, generator=generator)
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
