"""Stage ``train``: one FBPConvNet per training scheme of the config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ctrobust.distributed import barrier, is_main
from ctrobust.results import SchemeTraining
from ctrobust.runfiles import atomic_write_json, save_tensors
from ctrobust.training.fit import train_scheme
from pipelines.builders import (
    image_network,
    load_simulated,
    measurement_operator,
    network_weights,
)
from pipelines.runner import RunContext


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
            lambda: image_network(ctx.cfg),
            show_progress=ctx.show_progress,
            log=ctx.log,
        )
        if is_main():
            state = {k: v.detach().cpu() for k, v in result.net.state_dict().items()}
            save_tensors(out / network_weights(ctx, scheme.name).name, state)
        histories[scheme.name] = result.history
        summary[scheme.name] = SchemeTraining(
            epochs=len(result.history),
            resumed_from_epoch=result.resumed_from_epoch,
            final=result.history[-1] if result.history else {},
        ).model_dump(mode="json")
    if is_main():
        atomic_write_json(out / "history.json", histories)
        atomic_write_json(out / "metrics.json", {"training": summary})
    return summary
