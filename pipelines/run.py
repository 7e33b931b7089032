"""Entry point of a pipeline run: pick the stages for the config and execute them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ctrobust.config import RunConfig
from pipelines.ct import ct_stages
from pipelines.runner import RunContext, Runner, resolve_device


def run_pipeline(
    cfg: RunConfig, run_dir: Path, *, log: logging.Logger, show_progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg`` in ``run_dir``; returns the merged metrics."""
    ctx = RunContext(
        cfg=cfg,
        run_dir=run_dir,
        device=resolve_device(cfg.device),
        log=log,
        show_progress=show_progress,
    )
    return Runner(ct_stages(), ctx).run()
