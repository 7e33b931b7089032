"""Entry point of a pipeline run: pick the stages for the config and execute them.

One process by default; ``nproc_per_node`` > 1 spawns that many processes with
ignite.distributed (gloo on the CPU, nccl on GPUs), and a run started by torchrun
(WORLD_SIZE in the environment) joins torchrun's process group, on one or many nodes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch

from ctrobust.config import RunConfig
from ctrobust.distributed import backend_for, is_main, launch
from ctrobust.runtime import tune_cpu_runtime
from pipelines.builders import check_external_reconstructors
from pipelines.ct import stages_for
from pipelines.logs import setup_logging
from pipelines.runner import RunContext, Runner, resolve_device


def _execute(cfg: RunConfig, run_dir: Path, quiet: bool, debug: bool) -> dict[str, Any]:
    tune_cpu_runtime()
    log = setup_logging(run_dir, quiet, debug, main=is_main())
    device = resolve_device(cfg.device)
    if idist.get_world_size() > 1 and device.type == "cuda":
        device = idist.device()
    # progress bars only on a terminal: redirected to a file, their carriage-return redraws
    # become one unreadable line per bar
    bars = not quiet and sys.stderr.isatty()
    ctx = RunContext(cfg=cfg, run_dir=run_dir, device=device, log=log, show_progress=bars)
    check_external_reconstructors(cfg, device)  # shapes, units, gradients: before any work
    return Runner(stages_for(cfg), ctx).run()


def _worker(local_rank: int, cfg: RunConfig, run_dir: Path, quiet: bool, debug: bool) -> None:
    # Processes share the cores: more torch threads than cores makes every parallel
    # region wait for a descheduled thread (measured 30x slower on 2 busy cores).
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", idist.get_nproc_per_node()))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_processes)))
    _execute(cfg, run_dir, quiet, debug)


def run_pipeline(
    cfg: RunConfig,
    run_dir: Path,
    *,
    quiet: bool = False,
    debug: bool = False,
    nproc_per_node: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg`` in ``run_dir``; returns the merged metrics."""
    under_torchrun = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if (nproc_per_node or 1) <= 1 and not under_torchrun:
        return _execute(cfg, run_dir, quiet, debug)
    backend = backend_for(resolve_device(cfg.device))
    launch(_worker, cfg, run_dir, quiet, debug, nproc_per_node=nproc_per_node, backend=backend)
    return json.loads((run_dir / "metrics.json").read_text())
