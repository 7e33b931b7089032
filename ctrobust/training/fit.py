"""Train one scheme of a config end to end, with checkpoints and resume.

Every scheme (plain, weight decay, Parseval, adversarial) runs as an ignite
Engine; an ignite ``Checkpoint`` saves network, optimiser, schedule and engine
state after every ``checkpoint_every`` epochs, and a restarted run continues
from the newest checkpoint instead of starting over. The per-epoch history lives in
``engine.state.history`` (a state_dict user key), so the checkpoint carries it and a
resumed run has exactly the rows of the epochs it did not redo.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, ProgressBar, global_step_from_engine
from ignite.handlers.param_scheduler import LRScheduler
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.config import RunConfig, SchemeConfig
from ctrobust.distributed import GlobalBatchSampler, distribute_model, is_main
from ctrobust.models import FBPConvNet, ResidualUNet
from ctrobust.physics import ParallelBeam2D
from ctrobust.runfiles import load_tensors
from ctrobust.simulation import SimulatedSlices
from ctrobust.training.supervised import (
    Penalty,
    attach_epoch_seeding,
    create_evaluator,
    create_image_trainer,
    view_symmetries,
)

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d+)\.pt$")


@dataclass
class TrainResult:
    """The trained image network and what happened while training it."""

    net: ResidualUNet
    history: list[dict[str, float]]
    resumed_from_epoch: int


KEPT_CHECKPOINTS = 2


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``, highest epoch first."""
    found = [
        (int(m.group(1)), p)
        for p in folder.glob("checkpoint_*.pt")
        if (m := CHECKPOINT_PATTERN.search(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest epoch in ``folder``, if any."""
    found = checkpoints_newest_first(folder)
    return found[0] if found else None


def load_newest_intact(
    folder: Path, device: torch.device, log: logging.Logger
) -> tuple[Path, dict[str, object]] | None:
    """The newest checkpoint that loads, deleting (and naming) the unreadable ones above it.

    A kill during a save, or a full disk, can leave the newest file truncated; resuming from
    the one before loses an epoch instead of blocking every re-run. A file that loads but
    holds more than tensors (tampered with) is not skipped: ``load_tensors`` refuses it,
    naming it, and the run stops.
    """
    for path in checkpoints_newest_first(folder):
        try:
            return path, load_tensors(path, device=device)
        except (RuntimeError, EOFError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            log.warning(
                "checkpoint %s is unreadable (%s): deleted, trying the one before", path, reason
            )
            path.unlink()
    return None


def prune_checkpoints(folder: Path, keep: int = KEPT_CHECKPOINTS) -> None:
    """Delete all but the ``keep`` newest checkpoints (ignite counts only this session's)."""
    for path in checkpoints_newest_first(folder)[keep:]:
        path.unlink(missing_ok=True)


def _penalty(scheme: SchemeConfig) -> Penalty | None:
    if scheme.scheme != "parseval":
        return None
    from ctrobust.training.regularizers import parseval_penalty

    return lambda net: parseval_penalty(net, scheme.parseval_beta)


def _optimizer(scheme: SchemeConfig, cfg: RunConfig, net: ResidualUNet) -> torch.optim.Optimizer:
    """Adam from ``train`` for the supervised schemes; the paper's for the adversarial one."""
    if scheme.scheme == "adversarial":
        from ctrobust.training.adversarial_setup import adversarial_f_optimizer

        return adversarial_f_optimizer(scheme, net)
    return torch.optim.Adam(
        net.parameters(),
        lr=cfg.train.lr,
        betas=cfg.train.betas,
        weight_decay=getattr(scheme, "weight_decay", 0.0),
    )


def _build_engine(
    scheme: SchemeConfig,
    cfg: RunConfig,
    net: ResidualUNet,
    optimizer: torch.optim.Optimizer,
    op: ParallelBeam2D,
    train: SimulatedSlices,
    device: torch.device,
) -> tuple[Engine, DataLoader, dict[str, object]]:
    """The engine, its loader and the extra objects its checkpoint must hold."""
    sampler = GlobalBatchSampler(len(train), cfg.train.batch_size, cfg.seed)
    if scheme.scheme != "adversarial":
        dataset = TensorDataset(train.fbp, train.x_gt)
        engine = create_image_trainer(
            net,
            optimizer,
            device=device,
            seed=cfg.seed,
            augment=(
                view_symmetries(cfg.physics.views, cfg.physics.gt_views)
                if cfg.train.augment
                else ()
            ),
            penalty=_penalty(scheme),
        )
        extra: dict[str, object] = {}
    else:
        from ctrobust.training.adversarial_setup import build_adversarial_engine

        dataset = TensorDataset(train.y, train.x_gt)
        engine, extra = build_adversarial_engine(
            scheme, cfg, FBPConvNet(op, net), optimizer, train, device
        )
    loader = DataLoader(dataset, batch_sampler=sampler)
    attach_epoch_seeding(engine, sampler)
    return engine, loader, extra


def _epoch_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler) -> LRScheduler:
    """ignite's handler for a torch schedule stepped at EPOCH_COMPLETED (epoch 1 at the base lr).

    ``use_legacy=True`` because with torch 2.13 the default mode, attached at EPOCH_STARTED,
    sets epoch 1 above the base lr (CosineAnnealingLR's recursive step applied at
    last_epoch 0: 1.17e-3 for base 1e-3, T_max 4). The legacy mode sets lr(k) after epoch k
    in closed form, equal to torch's own stepping to within 1e-15 relative. Its warning
    only says to attach it at a COMPLETED event, which is where it goes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Please make sure to attach scheduler")
        return LRScheduler(scheduler, use_legacy=True)


def train_scheme(
    scheme: SchemeConfig,
    cfg: RunConfig,
    train: SimulatedSlices,
    val: SimulatedSlices | None,
    op: ParallelBeam2D,
    checkpoint_dir: Path,
    device: torch.device,
    build_network: Callable[[], ResidualUNet],
    *,
    show_progress: bool = True,
    log: logging.Logger | None = None,
) -> TrainResult:
    """Train (or resume training) the FBPConvNet image network for one scheme."""
    log = log or logging.getLogger(__name__)
    torch.manual_seed(cfg.seed)
    net = build_network()  # after seeding: the same initial weights on every (re-)run
    net.to(device)
    optimizer = _optimizer(scheme, cfg, net)
    epochs = cfg.train.epochs
    schedule = _epoch_schedule(
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        if cfg.train.lr_schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    model = distribute_model(net, device)
    engine, loader, extra = _build_engine(scheme, cfg, model, optimizer, op, train, device)
    engine.add_event_handler(Events.EPOCH_COMPLETED, schedule)
    engine.state.history = []
    engine.state_dict_user_keys.append("history")

    to_save = {"net": net, "optimizer": optimizer, "schedule": schedule, "trainer": engine, **extra}
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    saver = DiskSaver(checkpoint_dir, require_empty=False, atomic=True)
    checkpoint = Checkpoint(
        to_save,
        saver,
        n_saved=KEPT_CHECKPOINTS,
        global_step_transform=global_step_from_engine(engine),
    )

    resumed_from = 0
    if (found := load_newest_intact(checkpoint_dir, device, log)) is not None:
        last, state = found
        Checkpoint.load_objects(to_save, state)
        resumed_from = engine.state.epoch
        log.info(
            "%s: resuming from %s (epoch %d of %d)", scheme.name, last.name, resumed_from, epochs
        )

    evaluator = create_evaluator(net, device=device) if val is not None and len(val) else None

    @engine.on(Events.EPOCH_COMPLETED)
    def _record(engine: Engine) -> None:
        row = {"epoch": engine.state.epoch, **{k: float(v) for k, v in engine.state.output.items()}}
        if evaluator is not None:
            val_loader = DataLoader(
                TensorDataset(val.fbp, val.x_gt), batch_size=cfg.train.batch_size
            )
            evaluator.run(val_loader)
            row.update({f"val_{k}": float(v) for k, v in evaluator.state.metrics.items()})
        engine.state.history.append(row)
        if is_main():
            log.info("%s: %s", scheme.name, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))

    # After _record, so that the checkpoint of an epoch holds that epoch's history row.
    engine.add_event_handler(Events.EPOCH_COMPLETED(every=cfg.train.checkpoint_every), checkpoint)
    engine.add_event_handler(
        Events.EPOCH_COMPLETED(every=cfg.train.checkpoint_every),
        lambda _: prune_checkpoints(checkpoint_dir) if is_main() else None,
    )

    if show_progress and is_main():
        ProgressBar(desc=f"train {scheme.name}", persist=False).attach(
            engine,
            output_transform=lambda out: {"loss": out["loss"]},
        )
    if resumed_from < epochs:
        engine.run(loader, max_epochs=epochs)
    net.eval()
    return TrainResult(net=net, history=list(engine.state.history), resumed_from_epoch=resumed_from)
