"""Kill a run in every stage, re-run: the same figures as an uninterrupted run, and no leftovers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STAGES = ("ingest", "simulate", "train", "evaluate", "attack", "instability", "export", "report")
TIMING_KEYS = ("seconds_per_slice", "seconds", "resumed_from_epoch")


def _command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", str(config), "--out", str(out), "--quiet"]


def _stage_status(out: Path) -> dict[str, str]:
    try:
        stages = json.loads((out / "run.json").read_text())["stages"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {}
    return {name: entry.get("status", "") for name, entry in stages.items()}


def _kill_during(config: Path, out: Path, stage: str) -> str:
    """Start the run, SIGKILL it while ``stage`` (or, when that was too quick, a later one) runs."""
    later = STAGES[STAGES.index(stage) :]
    process = subprocess.Popen(_command(config, out), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        running = [s for s, status in _stage_status(out).items() if status == "running"]
        if running and running[0] in later:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return running[0]
        time.sleep(0.01)
    process.wait()
    return "finished"


def _figures(tree: object, path: str = "") -> dict[str, float]:
    """Every number of metrics.json by its key path, without timings."""
    if isinstance(tree, dict):
        return {
            k: v
            for key, value in tree.items()
            if key not in TIMING_KEYS
            for k, v in _figures(value, f"{path}/{key}").items()
        }
    if isinstance(tree, list):
        return {
            k: v for i, value in enumerate(tree) for k, v in _figures(value, f"{path}[{i}]").items()
        }
    if isinstance(tree, bool) or not isinstance(tree, int | float):
        return {}
    return {path: float(tree)}


def _leftovers(out: Path) -> list[Path]:
    names = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".partial", ".old"))]
    names += [p for p in (out / "checkpoints").rglob("tmp*")]
    for folder in (out / "checkpoints").iterdir():
        saved = sorted(folder.glob("checkpoint_*.pt"))
        if len(saved) > 2:
            names += saved
    return names


@pytest.mark.slow
def test_kill_in_every_stage_then_rerun(tiny_config: Path, tmp_path: Path) -> None:
    reference = tmp_path / "uninterrupted"
    assert subprocess.run(_command(tiny_config, reference), check=False).returncode == 0

    out = tmp_path / "killed"
    killed_in = [_kill_during(tiny_config, out, stage) for stage in STAGES]
    assert subprocess.run(_command(tiny_config, out), check=False).returncode == 0

    assert {"train", "attack", "instability"} <= set(killed_in), killed_in
    assert _leftovers(out) == []
    got = _figures(json.loads((out / "metrics.json").read_text()))
    want = _figures(json.loads((reference / "metrics.json").read_text()))
    assert got.keys() == want.keys()
    differ = {k: (got[k], want[k]) for k in want if not math.isclose(got[k], want[k], rel_tol=1e-5)}
    assert differ == {}
