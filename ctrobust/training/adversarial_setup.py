"""Build the adversarial G/f engine of Raj et al. for FBPConvNet from a config scheme."""

from __future__ import annotations

import torch
from ignite.engine import Engine

from ctrobust.config import AdversarialScheme, RunConfig
from ctrobust.distributed import distribute_model
from ctrobust.models import FBPConvNet
from ctrobust.models.generator import PerturbationGenerator
from ctrobust.simulation import SimulatedSlices
from ctrobust.training.adversarial import create_adversarial_trainer, paper_adam


def adversarial_f_optimizer(scheme: AdversarialScheme, net: torch.nn.Module) -> torch.optim.Adam:
    """f's optimiser in the adversarial scheme: the paper's Adam(betas=(0.5, 0.999)) at the
    scheme's ``f_lr`` (paper: 1e-4)."""
    return paper_adam(net.parameters(), lr=scheme.adversarial.f_lr)


def build_adversarial_engine(
    scheme: AdversarialScheme,
    cfg: RunConfig,
    f: FBPConvNet,
    optimizer: torch.optim.Optimizer,
    train: SimulatedSlices,
    device: torch.device,
) -> tuple[Engine, dict[str, object]]:
    """The Algorithm 1 engine on (y, x_gt) batches and the generator state to checkpoint.

    Eq. 6 is divided by the pixel count (``reduction="mean"``: all three terms, so lam1 and
    lam2 are the paper's), which puts the logged losses on the per-pixel MSE scale of the plain
    scheme; G is the paper's fully connected network on the sinogram. ``optimizer`` is f's,
    from :func:`adversarial_f_optimizer` in a pipeline run.
    """
    adv = scheme.adversarial
    G = PerturbationGenerator(
        tuple(train.y.shape[1:]),
        hidden=adv.g_hidden,
        generator=torch.Generator().manual_seed(cfg.seed),
    ).to(device)
    G = distribute_model(G, device)
    opt_G = paper_adam(G.parameters(), lr=adv.g_lr)
    engine = create_adversarial_trainer(
        f,
        G,
        optimizer,
        opt_G,
        eps=adv.eps,
        lam1=adv.lam1,
        lam2=adv.lam2,
        k_parts=adv.k_parts,
        g_steps=adv.g_steps,
        warmup_epochs=adv.warmup_epochs,
        device=device,
        relative_eps=adv.relative,
        reduction="mean",
    )
    return engine, {"generator": G, "generator_optimizer": opt_G}
