"""Stage ``verdict``: per-series pass/fail of every reconstructor (ctrobust.verdict).

Reads the attack at eps = noise norm and the clean reconstructions; thresholds come
from the ``verdict`` config section, so changing them recomputes only this stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrobust.metrics import psnr_per_slice, ssim_per_slice
from ctrobust.results import Metrics
from ctrobust.runfiles import atomic_write_json, load_tensors
from ctrobust.verdict import MethodFigures, format_verdict_table, series_verdicts
from pipelines.builders import load_simulated
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    metrics = Metrics.model_validate(ctx.metrics)
    if metrics.attack is None:
        raise ValueError("the verdict needs the attack stage's figures (attack.enabled)")
    data, split = load_simulated(ctx)
    rows = load_tensors(ctx.stage_dir("attack") / "results.pt")["rows"]
    position = {row: i for i, row in enumerate(split["test"])}
    recons = load_tensors(ctx.stage_dir("evaluate") / "test_recons.pt")
    attacked = data.subset(rows)
    keys = [f"{m['patient']}:{str(m['series'])[-8:]}" for m in attacked.meta]
    methods = {}
    for name, figures in metrics.attack.models.items():
        if figures.at_noise is None:
            ctx.log.warning("verdict: none: the simulation is noise-free (physics.i0 null)")
            atomic_write_json(out / "metrics.json", {})
            return {}
        clean = recons[name][[position[r] for r in rows]]
        methods[name] = MethodFigures(
            label=metrics.method_label(name),
            psnr=psnr_per_slice(clean, attacked.x_gt).tolist(),
            ssim=ssim_per_slice(clean, attacked.x_gt).tolist(),
            error_per_eps=figures.delta_max_per_slice,
            at_noise=figures.at_noise,
        )
    result = series_verdicts(
        keys,
        metrics.attack.test_slices,
        {k: str(m.get("description", "")) for k, m in zip(keys, attacked.meta, strict=True)},
        methods,
        metrics.attack.settings.eps,
        k_ratio=ctx.cfg.verdict.k_ratio,
        max_rms_hu=ctx.cfg.verdict.max_rms_hu,
    )
    for line in format_verdict_table(result).splitlines():
        ctx.log.info("verdict: %s", line)
    atomic_write_json(out / "metrics.json", {"verdict": result.model_dump(mode="json")})
    return {v.method + "/" + v.series: "PASS" if v.passed else "FAIL" for v in result.series}
