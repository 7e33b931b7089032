"""Stage ``evaluate``: clean PSNR/SSIM of FBP and of every trained network, per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice, ssim_per_slice, summarize
from ctrobust.runfiles import atomic_write_json, save_tensors
from pipelines.runner import RunContext
from pipelines.stages.simulate import load_simulated
from pipelines.stages.train import load_networks


def reconstruct(
    net: torch.nn.Module, fbp: torch.Tensor, device: torch.device, batch: int = 16
) -> torch.Tensor:
    """Network output for cached FBP images, in batches, on CPU."""
    with torch.no_grad():
        return torch.cat(
            [net(fbp[i : i + batch].to(device)).cpu() for i in range(0, len(fbp), batch)]
        )


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    data, split = load_simulated(ctx)
    nets = load_networks(ctx)
    views = ctx.cfg.physics.views
    clean: dict[str, Any] = {
        "note": f"against the {ctx.cfg.physics.gt_views}-view FBP; {DATA_RANGE_NOTE}"
    }
    test_recons = {}
    for name, idx in split.items():
        if not idx:
            continue
        part = data.subset(idx)
        methods = {
            f"fbp{views}": part.fbp,
            **{n: reconstruct(net, part.fbp, ctx.device) for n, net in nets.items()},
        }
        clean[name] = {}
        for method, recon in methods.items():
            psnr, ssim = psnr_per_slice(recon, part.x_gt), ssim_per_slice(recon, part.x_gt)
            clean[name][method] = {"psnr": summarize(psnr), "ssim": summarize(ssim)}
            if name == "test":
                clean[name][method]["psnr_per_slice"] = [round(float(v), 3) for v in psnr]
        if name == "test":
            test_recons = methods
    save_tensors(out / "test_recons.pt", test_recons)
    atomic_write_json(out / "metrics.json", {"clean": clean})
    return {
        split_name: {m: round(v["psnr"]["mean"], 2) for m, v in table.items()}
        for split_name, table in clean.items()
        if split_name != "note"
    }
