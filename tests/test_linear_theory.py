"""Raj et al. Sec. 3 / 4.5: closed form, its numerical checks, and a small trained B^."""

from __future__ import annotations

import numpy as np
import pytest

from ctrobust.config import LinearTheoryConfig, LinearTrainingConfig
from ctrobust.linear_theory import (
    make_problem,
    paper_metrics,
    robust_inverse,
    run_linear_theory,
    train_robust_inverse,
    water_filling,
)
from ctrobust.linear_theory.closed_form import paper_level, shared_delta_objective
from ctrobust.linear_theory.numerical import (
    per_sample_objective,
    solve_diagonal,
    solve_full,
    solve_per_sample,
    worst_case_perturbation,
)

LAM, EPS = 1.0, 0.1


@pytest.fixture(scope="module")
def problem():
    return make_problem(0, n_samples=2_000)


def test_problem_set_up(problem) -> None:
    assert problem.A.shape == (10, 20) and problem.x.shape == (2_000, 20)
    np.testing.assert_allclose(problem.S[-2:], [1e-3, 1e-4])
    np.testing.assert_allclose((problem.U * problem.S) @ problem.V.T, problem.A, atol=1e-14)
    np.testing.assert_allclose(problem.x.mean(0), 0, atol=1e-13)  # normalised samples
    np.testing.assert_allclose(problem.x.T @ problem.x / 2_000, np.eye(20), atol=1e-12)
    np.testing.assert_allclose(problem.x[0::2], -problem.x[1::2])  # antithetic pairs
    assert 0.5 < problem.S[7] < problem.S[0] < 3.0  # the unmodified spectrum of N(0, 1/10)


def test_closed_form_matches_numerical_solves(problem) -> None:
    B, wl = robust_inverse(problem.A, LAM, EPS)
    np.testing.assert_allclose(solve_diagonal(problem.S, LAM, EPS), wl.q, rtol=0, atol=1e-6)
    full = solve_full(problem.A, LAM, EPS)  # no structure assumed
    assert np.abs(full.B - B).max() < 1e-6
    assert -1e-9 < full.gap < 1e-6
    Q = problem.V.T @ full.B @ problem.U  # the full solve lands on V diag(q) U^T
    assert np.abs(Q - np.diag(np.diag(Q))).max() < 1e-6
    assert np.linalg.norm(full.B - problem.V @ Q @ problem.U.T) < 1e-9
    rng = np.random.default_rng(1)  # and it is a minimum: random moves only increase J
    best = shared_delta_objective(B, problem.A, LAM, EPS)
    for _ in range(20):
        other = B + 1e-3 * rng.standard_normal(B.shape)
        assert shared_delta_objective(other, problem.A, LAM, EPS) > best


def test_water_level_is_papers_formula_at_the_consistent_m(problem) -> None:
    wl = water_filling(problem.S, LAM, EPS)
    ascending = np.sort(problem.S)
    assert wl.m == 3
    # eq. (9) at that m against an optimiser that knows nothing of water levels (SLSQP on the
    # epigraph of max q^2): its m largest entries are the level
    numerical = np.sort(solve_diagonal(problem.S, LAM, EPS))
    np.testing.assert_allclose(
        numerical[-wl.m :], paper_level(problem.S, wl.m, LAM, EPS), atol=1e-6
    )
    assert numerical[-wl.m - 1] < wl.level - 1e-3  # and the next one is not clipped
    assert 1 / ascending[wl.m] <= wl.level < 1 / ascending[wl.m - 1]
    np.testing.assert_allclose(np.sort(wl.q)[-wl.m :], wl.level)
    # Eq. (9) with m = 2 (the two replaced values) is not a consistent water level: its
    # "largest entry" q_m is below the unclipped 1/S_3, and its objective is worse.
    level2 = paper_level(problem.S, 2, LAM, EPS)
    assert level2 < 1 / ascending[2]
    q2 = 1 / problem.S
    q2[-2:] = level2
    B2 = (problem.V * q2) @ problem.U.T
    B, _ = robust_inverse(problem.A, LAM, EPS)
    assert shared_delta_objective(B2, problem.A, LAM, EPS) > shared_delta_objective(
        B, problem.A, LAM, EPS
    )


def test_papers_two_by_two_example() -> None:
    """A = diag(1, a), lam = 1: f^ = diag(1, a / (a^2 + eps^2 / 2)) (Sec. 3)."""
    a = 0.01
    B, wl = robust_inverse(np.diag([1.0, a]), 1.0, EPS)
    np.testing.assert_allclose(B, np.diag([1.0, a / (a**2 + 0.5 * EPS**2)]), atol=1e-14)
    assert wl.m == 1


def test_worst_case_perturbation_is_the_maximum() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((50, 4))
    q = np.array([2.0, 1.5, 1.5, 0.3])
    d = worst_case_perturbation(a, q, EPS)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), EPS, rtol=1e-12)
    best = np.sum((a + q * d) ** 2, axis=1)
    trials = rng.standard_normal((4000, 4))
    trials = EPS * trials / np.linalg.norm(trials, axis=1, keepdims=True)
    values = np.sum((a[:, None, :] + q * trials[None]) ** 2, axis=2)
    assert np.all(values.max(axis=1) <= best + 1e-12)
    assert np.all(values.max(axis=1) > best * (1 - 1e-2))  # and the search gets close


def test_per_sample_objective_gradient_and_optimum(problem) -> None:
    _, wl = robust_inverse(problem.A, LAM, EPS)
    z = problem.x @ problem.V
    q = 0.9 * wl.q
    value, grad = per_sample_objective(q, problem.S, z, LAM, EPS)
    for i in (0, 7, 8, 9):
        e = np.zeros(10)
        e[i] = 1e-6
        numeric = (
            per_sample_objective(q + e, problem.S, z, LAM, EPS)[0]
            - per_sample_objective(q - e, problem.S, z, LAM, EPS)[0]
        ) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    q_ps = solve_per_sample(problem.S, z, LAM, EPS, q0=wl.q)
    # against an adversary that sees x, the weak directions are dropped, not water-filled
    assert np.all(q_ps[-2:] < 0.01) and np.all(wl.q[-2:] > 1.0)
    np.testing.assert_allclose(q_ps[:7], wl.q[:7], rtol=1e-3)
    assert per_sample_objective(q_ps, problem.S, z, LAM, EPS)[0] < value


def test_small_adversarial_training_reaches_the_closed_form() -> None:
    """Same engine as for CT with a shared delta, on a faster version of the problem.

    2 000 samples, 12 epochs of batch 32, and small singular values 0.05 and 0.01 instead of
    1e-3 and 1e-4 (those need ~10^4 steps: docs/linear_theory.md); the water level still
    clips the two weak directions (m = 2, kappa(B) = 15.5). Measured: 0.014 / 0.018 / 0.7 %.
    """
    problem = make_problem(0, n_samples=2_000, small_singular_values=(5e-2, 1e-2))
    B, wl = robust_inverse(problem.A, LAM, EPS)
    assert wl.m == 2
    settings = LinearTrainingConfig(
        generator="shared", epochs=12, warmup_epochs=1, batch_size=32, lr=1e-3, g_steps=2
    )
    trained = train_robust_inverse(problem, settings, lam=LAM, eps=EPS)
    m = paper_metrics(trained.B_hat, B, problem.A)
    assert m["rel_err_fro"] < 0.03
    assert m["rel_err_spec"] < 0.04
    assert abs(m["residual_ratio"] - 1) < 2e-3
    assert abs(m["kappa_B_hat"] / m["kappa_B"] - 1) < 0.02
    assert trained.history[0]["adversarial"] == 0.0 and trained.history[-1]["adversarial"] == 1.0
    assert trained.history[-1]["g_norm_mean"] == pytest.approx(EPS, rel=1e-6)  # projected G


def test_run_linear_theory_small() -> None:
    out = run_linear_theory(
        LinearTheoryConfig(n_samples=400, per_sample_optimum=False, training={"epochs": 2})
    )
    assert out["numerical_check"]["full_max_abs_diff"] < 1e-6
    assert out["numerical_check"]["diagonal_max_abs_diff"] < 1e-6
    assert set(out["trained"]) == {"shared"}
    assert {"rel_err_fro", "rel_err_spec", "residual_ratio", "kappa_B", "kappa_B_hat"} <= set(
        out["trained"]["shared"]
    )
