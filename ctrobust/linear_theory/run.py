"""Sec. 4.5 end to end: closed form, its numerical checks, trained B^ and the paper's metrics.

``run_linear_theory(config, seed=...)`` takes the validated ``linear_theory`` section of a
config (:class:`ctrobust.config.LinearTheoryConfig`) and returns a JSON-ready dict for
``metrics.json`` under ``linear``. It needs no files and no CLI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ctrobust.config import LinearTheoryConfig
from ctrobust.linear_theory.closed_form import (
    paper_level,
    robust_inverse,
    shared_delta_objective,
)
from ctrobust.linear_theory.metrics import condition_number, paper_metrics, per_direction
from ctrobust.linear_theory.numerical import (
    per_sample_objective,
    solve_diagonal,
    solve_full,
    solve_per_sample,
)
from ctrobust.linear_theory.problem import make_problem
from ctrobust.linear_theory.training import train_robust_inverse

PAPER = {
    "rel_err_fro": 0.024,
    "rel_err_spec": 0.034,
    "residual_ratio": 0.99936,
    "kappa_B": 19.231,
    "kappa_B_hat": 19.311,
}


def meets_targets(metrics: Mapping[str, float]) -> bool:
    """Paper's errors or better, residual ratio within 0.01 of 1, kappa within 1 %."""
    return (
        metrics["rel_err_fro"] <= PAPER["rel_err_fro"]
        and metrics["rel_err_spec"] <= PAPER["rel_err_spec"]
        and abs(metrics["residual_ratio"] - 1) <= 0.01
        and abs(metrics["kappa_B_hat"] / metrics["kappa_B"] - 1) <= 0.01
    )


def run_linear_theory(
    config: LinearTheoryConfig | None = None,
    *,
    seed: int = 0,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Closed form, numerical checks, optional per-sample optimum, and each training run."""
    log = log or logging.getLogger(__name__)
    cfg = config or LinearTheoryConfig()
    lam, eps = cfg.lam, cfg.eps
    problem = make_problem(
        seed, n=cfg.n, m=cfg.m, n_samples=cfg.n_samples,
        small_singular_values=cfg.small_singular_values, entry_variance=cfg.entry_variance,
        normalize=cfg.normalize, antithetic=cfg.antithetic,
    )  # fmt: skip
    A, U, S, V = problem.A, problem.U, problem.S, problem.V
    B, wl = robust_inverse(A, lam, eps)
    n_replaced = len(cfg.small_singular_values)
    replaced_level = paper_level(S, n_replaced, lam, eps)
    q_replaced = 1.0 / S
    q_replaced[np.argsort(S)[:n_replaced]] = replaced_level
    out: dict[str, Any] = {
        "paper": PAPER,
        "problem": {
            "singular_values": S.tolist(),
            "kappa_A": float(S[0] / S[-1]),
            "n_samples": problem.x.shape[0],
        },
        "closed_form": {
            "m": wl.m,
            "level": wl.level,
            "q": wl.q.tolist(),
            "kappa_B": condition_number(B),
            "objective": shared_delta_objective(B, A, lam, eps),
            "paper_formula_with_m_replaced": {
                "m": n_replaced,
                "level": replaced_level,
                "kappa": float(q_replaced.max() / q_replaced.min()),
                "objective": shared_delta_objective((V * q_replaced) @ U.T, A, lam, eps),
            },
        },
    }
    t0 = time.perf_counter()
    full = solve_full(A, lam, eps)
    Q_full = V.T @ full.B @ U
    out["numerical_check"] = {
        "diagonal_max_abs_diff": float(np.abs(solve_diagonal(S, lam, eps) - wl.q).max()),
        "full_max_abs_diff": float(np.abs(full.B - B).max()),
        "full_duality_gap": full.gap,
        "full_off_structure": float(np.linalg.norm(full.B - (V * np.diag(Q_full)) @ U.T)),
        "seconds": time.perf_counter() - t0,
    }
    log.info("linear theory: closed form m=%d level=%.6g checked", wl.m, wl.level)

    B_ps = None
    if cfg.per_sample_optimum:
        t0 = time.perf_counter()
        z = problem.x @ V
        q_ps = solve_per_sample(S, z, lam, eps, q0=wl.q)
        B_ps = (V * q_ps) @ U.T
        out["per_sample_optimum"] = {
            "q": q_ps.tolist(),
            "objective": per_sample_objective(q_ps, S, z, lam, eps)[0],
            "objective_at_closed_form": per_sample_objective(wl.q, S, z, lam, eps)[0],
            "vs_closed_form": paper_metrics(B_ps, B, A),
            "seconds": time.perf_counter() - t0,
        }

    out["trained"] = {}
    for name, training in cfg.runs.items():
        t0 = time.perf_counter()
        trained = train_robust_inverse(problem, training, lam=lam, eps=eps, seed=seed)
        metrics = paper_metrics(trained.B_hat, B, A)
        entry: dict[str, Any] = {
            "generator": training.generator,
            **metrics,
            "meets_paper_targets": meets_targets(metrics),
            "per_direction": per_direction(trained.B_hat, wl.q, U, S, V),
            "last_epoch": trained.history[-1] if trained.history else {},
            "seconds": time.perf_counter() - t0,
        }
        if B_ps is not None:
            entry["vs_per_sample_optimum"] = paper_metrics(trained.B_hat, B_ps, A)
        out["trained"][name] = entry
        log.info("linear theory: %s trained in %.0f s: %s", name, entry["seconds"], metrics)
    return out
