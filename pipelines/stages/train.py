"""Stage ``train``: one FBPConvNet per training scheme of the config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ctrobust.config import RunConfig
from ctrobust.distributed import barrier, is_main
from ctrobust.models import ResidualUNet, build_residual_unet
from ctrobust.physics import ParallelBeam2D
from ctrobust.runfiles import atomic_write_json, load_tensors, save_tensors
from ctrobust.training.fit import train_scheme
from pipelines.runner import RunContext
from pipelines.stages.simulate import load_simulated


def measurement_operator(cfg: RunConfig, device: torch.device) -> ParallelBeam2D:
    """The operator of the measured (input) views of a config, on ``device``."""
    return ParallelBeam2D(
        cfg.data.n,
        cfg.physics.views,
        n_det=cfg.physics.n_det,
        device=device,
        window=cfg.physics.filter,
    )


def load_networks(ctx: RunContext) -> dict[str, ResidualUNet]:
    """The trained image networks of every scheme, in eval mode on the run's device."""
    nets = {}
    for scheme in ctx.cfg.train.schemes:
        net = build_residual_unet(
            ctx.cfg.model.channels,
            num_res_units=ctx.cfg.model.num_res_units,
            dropout=ctx.cfg.model.dropout,
        )
        net.load_state_dict(load_tensors(ctx.stage_dir("train") / f"{scheme.name}.pt"))
        nets[scheme.name] = net.to(ctx.device).eval()
    return nets


def _checkpoint_dir(ctx: RunContext, name: str) -> Path:
    """Checkpoints of one scheme, emptied when the stage's inputs changed."""
    folder = ctx.run_dir / "checkpoints" / name
    stamp = folder / "fingerprint.txt"
    fp = ctx.fingerprints["train"]
    if is_main():
        if folder.exists() and (not stamp.exists() or stamp.read_text() != fp):
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fp)
    barrier()
    return folder


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    data, split = load_simulated(ctx)
    op = measurement_operator(ctx.cfg, ctx.device)
    train, val = data.subset(split["train"]), data.subset(split["val"]) if split["val"] else None
    summary: dict[str, Any] = {}
    histories = {}
    for scheme in ctx.cfg.train.schemes:
        result = train_scheme(
            scheme,
            ctx.cfg,
            train,
            val,
            op,
            _checkpoint_dir(ctx, scheme.name),
            ctx.device,
            show_progress=ctx.show_progress,
            log=ctx.log,
        )
        if is_main():
            state = {k: v.detach().cpu() for k, v in result.net.state_dict().items()}
            save_tensors(out / f"{scheme.name}.pt", state)
        histories[scheme.name] = result.history
        summary[scheme.name] = {
            "epochs": len(result.history),
            "resumed_from_epoch": result.resumed_from_epoch,
            "final": result.history[-1] if result.history else {},
        }
    if is_main():
        atomic_write_json(out / "history.json", histories)
        atomic_write_json(out / "metrics.json", {"training": summary})
    return summary
