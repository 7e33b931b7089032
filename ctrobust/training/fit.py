"""Train one scheme of a config end to end, with checkpoints and resume.

Every scheme (plain, weight decay, Parseval, adversarial) runs as an ignite
Engine; an ignite ``Checkpoint`` saves network, optimiser, schedule and engine
state after every ``checkpoint_every`` epochs, and a restarted run continues
from the newest checkpoint instead of starting over.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, ProgressBar, global_step_from_engine
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.config import RunConfig, SchemeConfig
from ctrobust.distributed import GlobalBatchSampler, distribute_model, is_main
from ctrobust.models import FBPConvNet, ResidualUNet, build_residual_unet
from ctrobust.physics import ParallelBeam2D
from ctrobust.simulation import SimulatedSlices
from ctrobust.training.supervised import (
    Penalty,
    attach_epoch_seeding,
    create_evaluator,
    create_supervised_trainer,
    view_symmetries,
)
from dicom_io.atomic import write_text_atomic

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d+)\.pt$")


@dataclass
class TrainResult:
    """The trained image network and what happened while training it."""

    net: ResidualUNet
    history: list[dict[str, float]]
    resumed_from_epoch: int


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest epoch in ``folder``, if any."""
    found = [
        (int(m.group(1)), p)
        for p in folder.glob("checkpoint_*.pt")
        if (m := CHECKPOINT_PATTERN.search(p.name))
    ]
    return max(found)[1] if found else None


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
        net.parameters(), lr=cfg.train.lr, betas=cfg.train.betas, weight_decay=scheme.weight_decay
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
        engine = create_supervised_trainer(
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


def train_scheme(
    scheme: SchemeConfig,
    cfg: RunConfig,
    train: SimulatedSlices,
    val: SimulatedSlices | None,
    op: ParallelBeam2D,
    checkpoint_dir: Path,
    device: torch.device,
    *,
    show_progress: bool = True,
    log: logging.Logger | None = None,
) -> TrainResult:
    """Train (or resume training) the FBPConvNet image network for one scheme."""
    log = log or logging.getLogger(__name__)
    torch.manual_seed(cfg.seed)
    net = build_residual_unet(
        cfg.model.channels, num_res_units=cfg.model.num_res_units, dropout=cfg.model.dropout
    )
    net.to(device)
    optimizer = _optimizer(scheme, cfg, net)
    epochs = cfg.train.epochs
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        if cfg.train.lr_schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    model = distribute_model(net, device)
    engine, loader, extra = _build_engine(scheme, cfg, model, optimizer, op, train, device)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: schedule.step())

    to_save = {"net": net, "optimizer": optimizer, "schedule": schedule, "trainer": engine, **extra}
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    saver = DiskSaver(checkpoint_dir, require_empty=False, atomic=True)
    checkpoint = Checkpoint(
        to_save, saver, n_saved=2, global_step_transform=global_step_from_engine(engine)
    )

    history_path = checkpoint_dir / "history.json"
    resumed_from = 0
    if (last := latest_checkpoint(checkpoint_dir)) is not None:
        Checkpoint.load_objects(to_save, torch.load(last, map_location=device, weights_only=True))
        resumed_from = engine.state.epoch
        log.info(
            "%s: resuming from %s (epoch %d of %d)", scheme.name, last.name, resumed_from, epochs
        )
    history: list[dict[str, float]] = (
        json.loads(history_path.read_text())[:resumed_from]
        if resumed_from and history_path.exists()
        else []
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
        history.append(row)
        if is_main():
            write_text_atomic(history_path, json.dumps(history, indent=1))
            log.info("%s: %s", scheme.name, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))

    # After _record: a kill between the two leaves a history one epoch ahead of the newest
    # checkpoint, which the resume truncates, never one behind.
    engine.add_event_handler(Events.EPOCH_COMPLETED(every=cfg.train.checkpoint_every), checkpoint)

    if show_progress and is_main():
        ProgressBar(desc=f"train {scheme.name}", persist=False).attach(
            engine,
            output_transform=lambda out: {"loss": out.get("mse", out.get("loss_clean", 0.0))},
        )
    if resumed_from < epochs:
        engine.run(loader, max_epochs=epochs)
    net.eval()
    return TrainResult(net=net, history=history, resumed_from_epoch=resumed_from)
