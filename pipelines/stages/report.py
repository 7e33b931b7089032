"""Stage ``report``: the self-contained HTML report at ``RUN_DIR/report/index.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrobust.report import build_report
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    # metrics.json must hold every earlier stage before the report reads it.
    html = build_report(ctx.run_dir)
    ctx.log.info("report: %s", html)
    return {"report": str(html)}
