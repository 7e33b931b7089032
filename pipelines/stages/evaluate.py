"""Stage ``evaluate``: clean PSNR/SSIM of every reconstructor under test, per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice, ssim_per_slice, summarize
from ctrobust.reconstructors import Reconstructor
from ctrobust.results import CleanResult, describe
from ctrobust.runfiles import atomic_write_json, save_tensors
from pipelines.builders import load_simulated, measurement_operator, reconstructors_under_test
from pipelines.runner import RunContext


def reconstruct(
    f: Reconstructor, y: torch.Tensor, device: torch.device, batch: int = 16
) -> torch.Tensor:
    """``f`` on cached sinograms, in batches without gradients, returned on the CPU."""
    with torch.no_grad():
        return torch.cat([f(y[i : i + batch].to(device)).cpu() for i in range(0, len(y), batch)])


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    data, split = load_simulated(ctx)
    methods = reconstructors_under_test(ctx, measurement_operator(ctx.cfg, ctx.device))
    tables: dict[str, Any] = {}
    test_recons = {}
    for name, idx in split.items():
        if not idx:
            continue
        part = data.subset(idx)
        recons = {f.name: reconstruct(f, part.y, ctx.device) for f in methods}
        tables[name] = {}
        for method, recon in recons.items():
            psnr, ssim = psnr_per_slice(recon, part.x_gt), ssim_per_slice(recon, part.x_gt)
            tables[name][method] = {
                "psnr": summarize(psnr),
                "ssim": summarize(ssim),
                "psnr_source": summarize(psnr_per_slice(recon, part.x_true)),
                "ssim_source": summarize(ssim_per_slice(recon, part.x_true)),
            }
            if name == "test":
                tables[name][method]["psnr_per_slice"] = [round(float(v), 3) for v in psnr]
        if name == "test":
            test_recons = recons
    clean = CleanResult(
        note=f"against the {ctx.cfg.physics.gt_views}-view FBP (psnr, ssim) and against the "
        f"source image the simulation started from (psnr_source, ssim_source); {DATA_RANGE_NOTE}",
        **tables,
    )
    save_tensors(out / "test_recons.pt", test_recons)
    atomic_write_json(
        out / "metrics.json",
        {"methods": describe(methods), "clean": clean.model_dump(mode="json", exclude_none=True)},
    )
    return {
        split_name: {m: round(q.psnr.mean, 2) for m, q in table.items()}
        for split_name, table in clean.splits().items()
    }
