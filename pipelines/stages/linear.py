"""Stage ``linear``: Raj et al. Sec. 4.5, closed form against the trained robust inverse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrobust.linear_theory.run import run_linear_theory
from ctrobust.results import LinearResult
from ctrobust.runfiles import atomic_write_json
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    result = run_linear_theory(ctx.cfg.linear_theory, seed=ctx.cfg.seed, log=ctx.log)
    typed = LinearResult.model_validate(result).model_dump(mode="json")
    atomic_write_json(out / "metrics.json", {"linear": typed})
    keys = ("rel_err_fro", "rel_err_spec", "residual_ratio", "kappa_B", "kappa_B_hat")
    return {
        name: {k: entry[k] for k in keys if k in entry}
        for name, entry in result.get("trained", {}).items()
    }
