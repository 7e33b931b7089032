"""Stage ``pacs_pull``: retrieve the study of data.pacs into RUN_DIR/cache/pacs_input/study/
for ingest.

The pull is atomic and resumable (dicom_io.pacs.pull): a killed run leaves
``cache/pacs_input/.study.partial/``, and the next run asks only for what is missing. The study
UID stays in cache/pacs_pull/pull.json, out of log.txt and run.json's stage summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrobust.runfiles import atomic_write_json
from dicom_io.pacs import pull_study
from pipelines.pacs_nodes import PULLED_FOLDER, node_from_config
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    pacs = ctx.cfg.data.pacs
    assert pacs is not None  # the stage is enabled only with data.pacs
    node = node_from_config(pacs, "data.pacs")
    dest = ctx.run_dir / PULLED_FOLDER
    ctx.log.info("pull: the study of data.pacs from %s into %s", node, dest)
    result = pull_study(node, pacs.study_uid, dest, pacs.series_uids, progress=ctx.show_progress)
    summary = {
        "node": str(node),
        "study_uid": pacs.study_uid,
        "series": result.series,
        "retrieved": result.retrieved,
        "already_there": result.already_there,
    }
    atomic_write_json(out / "pull.json", summary)
    return {
        "node": str(node),
        "series": len(result.series),
        "instances": sum(result.series.values()),
        "retrieved": result.retrieved,
    }
