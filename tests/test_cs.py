"""Raj et al. Sec. 4.1-4.3: the CS measurement matrices, the G/f engine on them, the stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ctrobust.config import ConfigError, CSConditioningConfig, load_config
from ctrobust.cs.operators import dct_rows_cols, gaussian
from ctrobust.cs.patches import hu_to_unit, slice_patches
from ctrobust.cs.sizes import resolve_size
from ctrobust.cs.training import train_network
from pipelines.cli import main

M, N, P = 100, 784, 3136


def cosine_dct(p: int) -> np.ndarray:
    """The orthonormal DCT-II from its formula, independent of scipy."""
    k = np.arange(p)[:, None]
    j = np.arange(p)[None, :]
    scale = np.where(k == 0, math.sqrt(1.0 / p), math.sqrt(2.0 / p))
    return scale * np.cos(np.pi * k * (2 * j + 1) / (2 * p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_matrix_is_well_conditioned_with_variance_one_over_m(seed: int) -> None:
    op = gaussian(M, N, seed)
    assert op.matrix.shape == (M, N)
    assert op.condition_number() < 3
    assert abs(op.matrix.var() * M - 1) < 0.05
    assert abs(op.matrix.mean()) < 0.01


@pytest.mark.parametrize("columns", ["first", "random"])
def test_dct_submatrix_is_exactly_rows_and_columns_of_an_orthonormal_dct(columns: str) -> None:
    full = cosine_dct(P)
    np.testing.assert_allclose(full @ full.T, np.eye(P), atol=1e-10)  # the reference is one
    op = dct_rows_cols(M, N, P, seed=0, columns=columns)  # type: ignore[arg-type]
    assert op.rows is not None and op.cols is not None
    assert len(set(op.rows.tolist())) == M and len(set(op.cols.tolist())) == N
    np.testing.assert_allclose(op.matrix, full[np.ix_(op.rows, op.cols)], rtol=0, atol=1e-12)
    if columns == "first":
        assert op.cols.tolist() == list(range(N))


def test_first_column_dct_submatrix_is_worse_conditioned_than_the_gaussian() -> None:
    dct = dct_rows_cols(M, N, P, seed=0).condition_number()
    assert dct > gaussian(M, N, 0).condition_number()
    assert dct > 4


def test_random_column_dct_submatrix_is_as_well_conditioned_as_the_gaussian() -> None:
    """Why the study takes the first n columns (docs/cs_conditioning.md)."""
    assert dct_rows_cols(M, N, P, seed=0, columns="random").condition_number() < 3


@pytest.mark.parametrize("make", [lambda: gaussian(M, N, 3), lambda: dct_rows_cols(M, N, P, 3)])
def test_adjoint_passes_the_dot_test(make) -> None:
    op = make()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, op.side, op.side, generator=gen, dtype=torch.float64)
    y = torch.randn(4, op.m, generator=gen, dtype=torch.float64)
    lhs = (op.forward(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12, atol=0)
    assert op.adjoint(y).shape == x.shape


def test_patches_are_the_windows_with_enough_body_in_minus_one_to_one() -> None:
    hu = np.full((64, 64), -1000.0)
    hu[16:48, 16:48] = 0.0  # a water block: exactly the 2 x 2 central windows of 16 x 16
    hu[20, 20] = 3000.0  # above the range: clipped to +1
    patches = slice_patches(hu, (1.0, 1.0), grid=64, patch=16, stride=16, min_body_fraction=0.5)
    assert patches.shape == (4, 16, 16)
    np.testing.assert_allclose(patches.max(), 1.0, atol=1e-6)
    assert abs(float(np.median(patches))) < 1e-6  # water is 0 on the [-1, 1] scale
    np.testing.assert_allclose(hu_to_unit(np.array([-2000.0, -1000.0, 500.0])), [-1, -1, 0.5])


def smooth_images(count: int, side: int, seed: int) -> torch.Tensor:
    """Smooth images in [-1, 1]: blurred noise through tanh, a stand-in for patches."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 1, side + 8, side + 8, generator=gen)
    blurred = torch.nn.functional.avg_pool2d(noise, 9, stride=1)
    return torch.tanh(3 * blurred)


def test_gf_engine_trains_two_epochs_on_the_dct_operator() -> None:
    cfg = CSConditioningConfig(epochs=2, batch_size=32, lr=1e-3, width=8, g_width=32, train_eps=0.5)
    size = resolve_size(cfg)
    op = dct_rows_cols(M, N, P, seed=0)
    x = smooth_images(128, size.patch, seed=1)
    trained = train_network(
        "adversarial", op, size, cfg, x, seed=0, device=torch.device("cpu"), progress=False
    )
    first, last = trained.history
    for row in trained.history:
        assert row["adversarial"] == 1.0
        assert all(math.isfinite(v) for v in row.values())
        assert 0 < row["g_norm_max"] <= size.train_eps * (1 + 1e-5)  # projected onto the ball
        assert row["loss_adv"] >= 0 and row["loss_clean"] >= 0
    assert last["loss_clean"] < first["loss_clean"]
    assert last["loss"] < first["loss"]
    assert not trained.net.training


TINY = """
name: cs_tiny
seed: 0
cs_conditioning:
  demo_patients: 3
  slices_per_patient: 1
  max_train: 64
  max_test: 8
  epochs: 1
  batch_size: 32
  width: 4
  g_width: 16
  pga_iterations: 3
  shown: 2
"""


def test_cs_config_runs_the_study_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "cs.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert list(run["stages"]) == ["cs", "cs_report"]
    section = json.loads((out / "metrics.json").read_text())["cs_conditioning"]
    assert section["eps"] == [0.0, 1.0, 2.0, 3.0]
    assert set(section["matrices"]) == {"gaussian", "dct"}
    patients = section["patients"]
    assert not set(patients["train"]) & set(patients["test"])
    for matrix in section["matrices"].values():
        assert set(matrix["schemes"]) == {"plain", "weight_decay", "parseval", "adversarial"}
        for scheme in matrix["schemes"].values():
            rho = scheme["rho_hat"]
            assert len(rho) == 4 and all(r >= rho[0] - 1e-6 for r in rho)  # PGA keeps delta = 0
        assert len(matrix["gap"]) == 4
    dct, gauss = section["matrices"]["dct"], section["matrices"]["gaussian"]
    assert dct["condition_number"] > gauss["condition_number"]
    figures = out / "cache" / "cs" / "figures"
    assert {p.name for p in figures.glob("*.png")} >= {"singular_values.png", "gap.png"}
    assert "DCT submatrix" in (out / "report" / "index.html").read_text()


def test_unknown_cs_key_is_a_one_line_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("cs_conditioning:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r": cs_conditioning\.epoch: unknown key"):
        load_config(config)


def test_linear_and_cs_sections_together_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "both.yaml"
    config.write_text("linear_theory: {}\ncs_conditioning: {}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config(config)
