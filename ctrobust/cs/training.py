"""Train one reconstructor of the compressive-sensing study under one of the paper's schemes.

* ``plain``: ||f(y) - x||^2 only (Raj et al. eq. 6 with mu = 0);
* ``weight_decay``: plus mu ||theta||^2 (eq. 5);
* ``parseval``: plus the Parseval tight-frame penalty with beta (eq. 10);
* ``adversarial``: the G/f min-max of eq. 6 by Algorithm 1
  (:func:`ctrobust.training.adversarial.create_adversarial_trainer`).

All four use the paper's Adam(lr, betas 0.5 / 0.999) and batches of 128, and all four use the
CT schemes' units: every term of eq. 6 divided by the pixel count (``reduction="mean"``, the
supervised trainer's per-pixel MSE), so lam1 and lam2 keep the paper's meaning (squared
norms summed per sample, averaged over the batch, times one constant) and the penalties
weigh against the same loss in every scheme.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.config import CSConditioningConfig
from ctrobust.cs.networks import CSReconstructor, cs_generator
from ctrobust.cs.operators import MatrixOperator
from ctrobust.cs.sizes import CSSize
from ctrobust.training.adversarial import (
    attach_epoch_means,
    create_adversarial_trainer,
    paper_adam,
)
from ctrobust.training.regularizers import parseval_penalty, weight_penalty
from ctrobust.training.supervised import create_image_trainer

Scheme = Literal["plain", "weight_decay", "parseval", "adversarial"]
SCHEMES: tuple[Scheme, ...] = ("plain", "weight_decay", "parseval", "adversarial")


@dataclass(frozen=True)
class TrainedNetwork:
    """A trained f in eval mode and the per-epoch means of its trainer's outputs."""

    net: CSReconstructor
    history: list[dict[str, float]]
    seconds: float


def build_engine(
    scheme: Scheme,
    net: nn.Module,
    op: MatrixOperator,
    size: CSSize,
    cfg: CSConditioningConfig,
    *,
    seed: int,
    device: torch.device,
) -> Engine:
    """The ignite engine that trains ``net`` on (y, x) batches under ``scheme``."""
    opt_f = paper_adam(net.parameters(), lr=cfg.lr)
    if scheme == "adversarial":
        radius = size.train_eps if cfg.project else None
        G = cs_generator(op.m, size.g_layers, cfg.g_width, seed, radius).to(device)
        return create_adversarial_trainer(
            net,
            G,
            opt_f,
            paper_adam(G.parameters(), lr=cfg.g_lr or cfg.lr),
            eps=size.train_eps,
            lam1=size.lam1,
            lam2=size.lam2,
            k_parts=cfg.k_parts,
            g_steps=cfg.g_steps,
            device=device,
            reduction="mean",
        )
    penalty = {
        "plain": None,
        "weight_decay": partial(weight_penalty, mu=cfg.weight_decay),
        "parseval": partial(parseval_penalty, beta=cfg.parseval_beta),
    }[scheme]
    return create_image_trainer(net, opt_f, device=device, seed=seed, penalty=penalty)


def train_network(
    scheme: Scheme,
    op: MatrixOperator,
    size: CSSize,
    cfg: CSConditioningConfig,
    x: Tensor,
    *,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> TrainedNetwork:
    """Train f on the noise-free pairs (A x, x) for ``cfg.epochs`` epochs from seed's init."""
    net = CSReconstructor(
        op,
        conv_layers=size.conv_layers,
        transposed_layers=size.transposed_layers,
        width=size.width,
        generator=torch.Generator().manual_seed(seed),
    ).to(device)
    y = op.forward(x)
    loader = DataLoader(
        TensorDataset(y, x),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    engine = build_engine(scheme, net, op, size, cfg, seed=seed, device=device)
    attach_epoch_means(engine)
    history: list[dict[str, float]] = []

    @engine.on(Events.EPOCH_COMPLETED)
    def _record(engine: Engine) -> None:
        means = {k: float(v) for k, v in engine.state.metrics.items() if k != "epoch_means"}
        history.append({"epoch": float(engine.state.epoch), **means})

    if progress:
        ProgressBar(persist=False, desc=f"train {op.name} {scheme}").attach(engine)
    start = time.perf_counter()
    engine.run(loader, max_epochs=cfg.epochs)
    return TrainedNetwork(net=net.eval(), history=history, seconds=time.perf_counter() - start)
