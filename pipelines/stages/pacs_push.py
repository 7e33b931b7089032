"""Stage ``pacs_push``: send the exported DICOM series (RUN_DIR/dicom/, de-identified when
export.deidentify is on) to the node of export.pacs, recording every instance's status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrobust.runfiles import atomic_write_json
from dicom_io.pacs import push_files, run_dicom_files
from pipelines.pacs_nodes import node_from_config
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    pacs = ctx.cfg.export.pacs
    assert pacs is not None  # the stage is enabled only with export.pacs
    node = node_from_config(pacs, "export.pacs")
    series = run_dicom_files(ctx.run_dir, pacs.kinds)
    ctx.log.info("push: %d series to %s", len(series), node)
    result = push_files(node, series)
    atomic_write_json(out / "push.json", {"node": str(node), **result.to_dict()})
    return {"node": str(node), "series": len(series), "stored": result.stored}
