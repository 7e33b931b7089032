"""Two processes (gloo) give the same training and attack figures as one.

Tolerances: the attack shards test slices over processes and is per-slice
deterministic, so rho-hat agrees to 1e-4 relative (float32 sums in another order).
Training splits every global batch over the processes and DDP averages the
gradients, which equals the one-process step except for BatchNorm statistics (per
process on the CPU): clean PSNR agrees to 0.05 dB after the tiny run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main

pytestmark = pytest.mark.slow


def _metrics(config: Path, out: Path, *extra: str) -> dict:
    assert main(["run", str(config), "--out", str(out), "--quiet", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_two_process_training_and_attack_match_one_process(
    tiny_config: Path, tmp_path: Path
) -> None:
    one = _metrics(tiny_config, tmp_path / "one")
    two = _metrics(tiny_config, tmp_path / "two", "--nproc-per-node", "2")

    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    for split in ("val", "test"):
        a, b = (
            one["clean"][split]["plain"]["psnr"]["mean"],
            two["clean"][split]["plain"]["psnr"]["mean"],
        )
        assert b == pytest.approx(a, abs=0.05), split
    assert two["training"]["plain"]["epochs"] == one["training"]["plain"]["epochs"]
    for method, figures in one["attack"]["models"].items():
        assert two["attack"]["models"][method]["rho_hat"] == pytest.approx(
            figures["rho_hat"], rel=1e-4
        )
        assert len(two["attack"]["models"][method]["delta_max_per_slice"][0]) == len(
            figures["delta_max_per_slice"][0]
        )
        # the attack at the noise norm is sharded too, and gathered back in slice order
        assert two["attack"]["models"][method]["at_noise"]["error"] == pytest.approx(
            figures["at_noise"]["error"], rel=1e-4
        )
