"""`ctrobust run` on a linear-theory config runs the Sec. 4.5 experiment, not the CT stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrobust.config import ConfigError, load_config
from pipelines.cli import main

SMALL = """
name: linear_small
seed: 0
linear_theory:
  n_samples: 2000
  per_sample_optimum: false
  training:
    epochs: 2
    warmup_epochs: 1
  runs:
    shared:
      generator: shared
      g_optimizer: sgd
      g_lr: 1.0
"""


def test_linear_config_runs_the_linear_stage_only(tmp_path: Path) -> None:
    config = tmp_path / "linear.yaml"
    config.write_text(SMALL)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert list(run["stages"]) == ["linear"]
    linear = json.loads((out / "metrics.json").read_text())["linear"]
    assert linear["numerical_check"]["diagonal_max_abs_diff"] < 1e-6
    entry = linear["trained"]["shared"]
    assert {"rel_err_fro", "rel_err_spec", "residual_ratio", "kappa_B", "kappa_B_hat"} <= set(entry)


def test_unknown_linear_key_is_a_one_line_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("linear_theory:\n  samples: 10\n")
    with pytest.raises(ConfigError, match=r": linear_theory\.samples: unknown key"):
        load_config(config)
