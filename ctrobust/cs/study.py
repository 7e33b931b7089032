"""Raj et al. Sec. 4.1-4.3 end to end: both matrices, four schemes each, rho-hat(eps) and gaps.

``run_cs_study(cfg, patients, seed=...)`` takes the validated ``cs_conditioning`` section and
the CT slices per patient and returns the JSON-ready ``metrics.json`` section together with
what the figures need (singular values, attacked reconstructions of a few test patches). It
writes no files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ctrobust.config import CSConditioningConfig
from ctrobust.cs.evaluation import adversarial_gap, worst_case_errors
from ctrobust.cs.operators import MatrixOperator, dct_rows_cols, gaussian
from ctrobust.cs.patches import PatchSplits, PatientSlices, split_patches
from ctrobust.cs.sizes import CSSize, resolve_size
from ctrobust.cs.training import SCHEMES, train_network

SHOWN_SCHEMES = ("plain", "parseval", "adversarial")
"""The rows of the paper's Figs. 2-3 under the true image."""


@dataclass
class CSStudy:
    """The metrics section, and per matrix the singular values and the qualitative rows."""

    metrics: dict[str, Any]
    singular_values: dict[str, Tensor] = field(default_factory=dict)
    truth: Tensor | None = None
    shown: dict[str, dict[str, list[Tensor]]] = field(default_factory=dict)


def make_operators(size: CSSize, cfg: CSConditioningConfig, seed: int) -> list[MatrixOperator]:
    """The Gaussian and the DCT-submatrix A at the size's m x n, both drawn at ``seed``."""
    p = cfg.dct_oversampling * size.n
    return [
        gaussian(size.m, size.n, seed),
        dct_rows_cols(size.m, size.n, p, seed, columns=cfg.dct_columns),
    ]


def _clean_mse(net: torch.nn.Module, op: MatrixOperator, x: Tensor, device: torch.device) -> float:
    """Per-pixel MSE of f(A x) against x on a split (the trainers' loss_clean)."""
    with torch.no_grad():
        x = x.to(device)
        return float(torch.mean((net(op.forward(x)) - x) ** 2))


def _settings(size: CSSize, cfg: CSConditioningConfig) -> dict[str, Any]:
    return {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "g_lr": cfg.g_lr or cfg.lr,
        "project": cfg.project,
        "width": size.width,
        "g_width": cfg.g_width,
        "conv_layers": size.conv_layers,
        "transposed_layers": size.transposed_layers,
        "g_layers": size.g_layers,
        "k_parts": cfg.k_parts,
        "g_steps": cfg.g_steps,
        "lam1": size.lam1,
        "lam2": size.lam2,
        "train_eps": size.train_eps,
        "weight_decay": cfg.weight_decay,
        "parseval_beta": cfg.parseval_beta,
        "pga_iterations": cfg.pga_iterations,
        "pga_step": cfg.pga_step,
        "pga_momentum": cfg.pga_momentum,
        "grid": size.grid,
        "stride": size.stride,
        "min_body_fraction": cfg.min_body_fraction,
    }


def run_cs_study(
    cfg: CSConditioningConfig,
    patients: Sequence[PatientSlices],
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: logging.Logger | None = None,
) -> CSStudy:
    """Train the four schemes on both matrices and attack each at every eps of the grid."""
    log = log or logging.getLogger(__name__)
    device = torch.device(device)
    start = time.perf_counter()
    size = resolve_size(cfg)
    splits: PatchSplits = split_patches(
        patients, grid=size.grid, patch=size.patch, stride=size.stride,
        min_body_fraction=cfg.min_body_fraction, max_train=cfg.max_train,
        max_test=cfg.max_test, seed=seed,
    )  # fmt: skip
    log.info(
        "cs: %d train / %d val / %d test patches of %d x %d",
        len(splits.train), len(splits.val), len(splits.test), size.patch, size.patch,
    )  # fmt: skip
    study = CSStudy(metrics={}, truth=splits.test[: cfg.shown].clone())
    matrices: dict[str, Any] = {}
    for op in make_operators(size, cfg, seed):
        svals = op.singular_values()
        study.singular_values[op.name] = torch.from_numpy(svals.copy())
        y_test = op.forward(splits.test)
        schemes: dict[str, Any] = {}
        study.shown[op.name] = {}
        for scheme in SCHEMES:
            trained = train_network(
                scheme, op, size, cfg, splits.train, seed=seed, device=device, progress=progress
            )
            cases = worst_case_errors(
                trained.net, y_test, splits.test, size.eval_eps, cfg, seed=seed, device=device
            )
            schemes[scheme] = {
                "rho_hat": [c.rho.value for c in cases],
                "rho_hat_stderr": [c.rho.stderr for c in cases],
                "val_mse": _clean_mse(trained.net, op, splits.val, device),
                "train_seconds": trained.seconds,
                "last_epoch": trained.history[-1] if trained.history else {},
            }
            if scheme in SHOWN_SCHEMES:
                study.shown[op.name][scheme] = [c.shown for c in cases]
            log.info(
                "cs: %s %s rho-hat %s (trained in %.0f s)", op.name, scheme,
                [round(v, 3) for v in schemes[scheme]["rho_hat"]], trained.seconds,
            )  # fmt: skip
        rho = {name: entry["rho_hat"] for name, entry in schemes.items()}
        gap = adversarial_gap(rho)
        matrices[op.name] = {
            "shape": [op.m, op.n],
            "p": op.p,
            "condition_number": float(svals[0] / svals[-1]),
            "sigma_max": float(svals[0]),
            "sigma_min": float(svals[-1]),
            "singular_values": svals.tolist(),
            "y_norm_mean": float(y_test.norm(dim=1).mean()),
            "schemes": schemes,
            "gap": gap,
            "gap_increase": gap[-1] - gap[0],
        }
    study.metrics = {
        "size": size.name,
        "patch": size.patch,
        "m": size.m,
        "n": size.n,
        "dct_columns": cfg.dct_columns,
        "patients": splits.patients,
        "patches": {
            "train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
        },
        "settings": _settings(size, cfg),
        "eps": list(size.eval_eps),
        "matrices": matrices,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    return study
