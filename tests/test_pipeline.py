"""End to end: `ctrobust run` on a tiny config, caching, partial recomputation, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.run_helpers import run_config

pytestmark = pytest.mark.slow


def test_run_writes_results_and_rerun_recomputes_nothing(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_config(tiny_config, out)
    assert {s["status"] for s in first["stages"].values()} <= {"done", "disabled"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["clean"]["test"]) == {"fbp24", "plain"}
    assert set(metrics["attack"]["models"]) == {"fbp24", "plain"}
    assert len(metrics["attack"]["models"]["plain"]["rho_hat"]) == 2
    certificate = metrics["attack"]["models"]["fbp24"]["certificate"]  # FBP is linear
    assert all(0 < r <= 1 + 1e-5 for r in certificate["pga_over_upper"])
    assert metrics["attack"]["models"]["plain"]["certificate"] is None
    assert all(n <= 5 for n in metrics["attack"]["models"]["plain"]["iterations_per_slice"][0])
    assert (out / "report" / "index.html").exists()
    instability = metrics["instability"]
    assert instability["more_views"]["views"] == [12, 24, 48]
    controls = {"control_cgls", "control_blur", "control_fbp_hann"}
    swept = {"fbp24", "tv", "sirt", "plain"} | controls
    assert set(instability["more_views"]["methods"]) == swept
    assert set(instability["controls"]["methods"]) == swept
    assert len(instability["more_views"]["methods"]["tv"]["psnr_source"]) == 3
    assert instability["details"]["names"] == ["hearts"]
    assert instability["tv"]["chosen_on"].startswith("train")
    # a two-weight grid always picks an end of it: the run must say the grid may be too narrow
    assert instability["tv"]["at_edge_of_grid"] is True
    assert "is at an end of instability.tv_weights" in (out / "log.txt").read_text()
    assert len(instability["tv_attack"]["rho_hat"]) == 2
    assert len(instability["tv_attack"]["tv_iterations"]) == 2  # one per attacked point
    assert all(n >= 1 for n in instability["tv_attack"]["tv_iterations"])
    assert list((out / "dicom").glob("*/plain_attacked_eps0.05/*.dcm"))
    assert list((out / "dicom").glob("*/ground_truth/*.dcm"))
    assert list((out / "dicom").glob("*/fbp24_attacked_eps0.05/*.dcm"))
    verdict = metrics["verdict"]
    attacked = len(metrics["attack"]["test_slices"])
    for method in ("fbp24", "plain"):
        judged = [v for v in verdict["series"] if v["method"] == method]
        assert sum(v["slices"] for v in judged) == attacked, "every attacked slice is judged"
        noise = metrics["attack"]["models"][method]["at_noise"]
        assert noise["eps_abs"] == pytest.approx(metrics["attack"]["noise_norm_per_slice"])
    assert metrics["data"]["split_by"] == "patient"
    assert metrics["training"]["plain"]["epochs"] == 2
    assert (out / "log.txt").read_text().count("stage train: running") == 1

    second = run_config(tiny_config, out)
    ran = {name for name, s in second["stages"].items() if s["status"] == "done"}
    assert ran == set(), f"a re-run recomputed {ran}"
    assert json.loads((out / "metrics.json").read_text()) == metrics

    third = run_config(tiny_config, out, "train.epochs=3")
    status = {name: s["status"] for name, s in third["stages"].items()}
    assert status["ingest"] == status["simulate"] == "cached"
    assert status["train"] == status["evaluate"] == status["attack"] == "done"

    fourth = run_config(
        tiny_config, out, "train.epochs=3", "attack.n_iter=6", "attack.start=jacobian"
    )
    status = {name: s["status"] for name, s in fourth["stages"].items()}
    assert status["train"] == status["evaluate"] == "cached"
    assert status["attack"] == status["export"] == status["report"] == "done"
    models = json.loads((out / "metrics.json").read_text())["attack"]["models"]
    starts = models["plain"]["start_comparison"]  # the better start per slice is the headline
    for k, rho in enumerate(models["plain"]["rho_hat"]):
        assert rho >= max(starts["rho_hat_cold"][k], starts["rho_hat_jacobian"][k]) - 1e-6
    assert models["fbp24"]["start_comparison"] is None  # FBP is certified instead

    fifth = run_config(
        tiny_config,
        out,
        "train.epochs=3",
        "attack.n_iter=6",
        "attack.start=jacobian",
        "verdict.k_ratio=9",
    )
    status = {name: s["status"] for name, s in fifth["stages"].items()}
    assert status["attack"] == "cached" and status["verdict"] == "done"


def test_sigkill_during_training_resumes_from_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    slow = ["--set", "train.epochs=150", "--set", "data.slices_per_series=8"]
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "run",
        str(tiny_config),
        "--out",
        str(out),
        "--quiet",
        *slow,
    ]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 240
    checkpoints = out / "checkpoints" / "plain"
    while time.time() < deadline and not list(checkpoints.glob("checkpoint_*.pt")):
        assert process.poll() is None, "the run ended before any checkpoint was written"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    status = json.loads((out / "run.json").read_text())["stages"]["train"]["status"]
    assert status == "running"

    assert subprocess.run(command, check=False).returncode == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["training"]["plain"]["resumed_from_epoch"] > 0
    assert resumed["training"]["plain"]["epochs"] == 150

    fresh = tmp_path / "fresh"
    assert subprocess.run([*command[:6], str(fresh), *command[7:]], check=False).returncode == 0
    uninterrupted = json.loads((fresh / "metrics.json").read_text())
    assert _keys(resumed) == _keys(uninterrupted)


def _keys(tree: object, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix}
    return {k for key, value in tree.items() for k in _keys(value, f"{prefix}/{key}")} - {
        "/training/plain/resumed_from_epoch"
    }


@pytest.mark.slow
def test_instability_attacks_fewer_tv_slices_than_it_tests_and_skips_eps_zero(
    tiny_config: Path, tmp_path: Path
) -> None:
    # TV keeps one weight per tested slice; the attacked subset must carry its own weights,
    # and the controls' amplification needs a budget that moves the input (eps > 0)
    out = tmp_path / "run"
    run_config(
        tiny_config,
        out,
        "attack.eps=[0.0, 0.05]",
        "instability.max_slices=2",
        "instability.tv_attack_slices=1",
        "export.enabled=false",
        "report.enabled=false",
    )
    instability = json.loads((out / "metrics.json").read_text())["instability"]
    assert instability["slices"] == 2
    assert instability["tv_attack"]["slices"] == 1
    assert len(instability["tv_attack"]["rho_hat"]) == 2
    assert instability["controls"]["eps"] == 0.05
    assert instability["controls"]["fbp_amplification"] > 0
