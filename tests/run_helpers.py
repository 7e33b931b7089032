"""One in-process `ctrobust run` for the tests that drive whole pipelines."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.cli import main


def run_config(config: Path, out: Path, *overrides: str) -> dict:
    """Run ``config`` into ``out`` with ``--set`` overrides; assert success, return run.json."""
    args = ["run", str(config), "--out", str(out), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "run.json").read_text())
