"""Numerical optima that check the closed form and go beyond it.

* ``solve_diagonal``: the shared-delta objective restricted to B = V diag(q) U^T, solved
  as a smooth QCQP by SLSQP over (q, s): min (1+lam) sum (q_i S_i - 1)^2 + lam eps^2 s
  subject to s >= q_i^2. Checks the water level without using it.
* ``solve_full``: the shared-delta objective over a full B (no structure assumed), through
  its concave dual. ||B||_2^2 = max over density matrices W (W >= 0, tr W = 1) of
  tr(B W B^T), so J(B) = max_W L(B, W) with L convex in B and linear in W; for fixed W
  the minimising B is B(W) = (1+lam) A^T ((1+lam) A A^T + lam eps^2 W)^-1 and
  g(W) = L(B(W), W) is concave and smooth. W = M M^T / tr(M M^T) is maximised with
  L-BFGS; B(W*) is the primal solution and J(B(W*)) - g(W*) >= 0 its duality gap.
* ``solve_per_sample``: the objective with a per-sample worst case (an adversary that
  sees x, as the attack of eq. 7 does) instead of a shared delta,
      E ||BAx - x||^2 + lam E max_{||d|| <= eps} ||B(Ax + d) - x||^2,
  which has no closed form. Sign-flip symmetry of N(0, I) and convexity in B give a
  minimiser of the form V diag(q) U^T with q >= 0, so it is solved over q: the inner
  maximisation (a trust-region problem) exactly per sample by bisection on its secular
  equation, the outer one by L-BFGS-B with Danskin's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from ctrobust.linear_theory.closed_form import shared_delta_objective


@dataclass(frozen=True)
class FullSolve:
    """Primal B from the dual, its duality gap and the dual weights W (in y-space)."""

    B: np.ndarray
    gap: float
    W: np.ndarray
    iterations: int


def solve_diagonal(S: np.ndarray, lam: float, eps: float) -> np.ndarray:
    """q minimising (1+lam) sum (q S - 1)^2 + lam eps^2 max q^2 (SLSQP on the epigraph)."""
    S = np.asarray(S, dtype=float)
    k, c = len(S), lam * eps**2

    def fun(v: np.ndarray) -> float:
        return float((1 + lam) * np.sum((v[:k] * S - 1) ** 2) + c * v[k])

    def jac(v: np.ndarray) -> np.ndarray:
        return np.r_[2 * (1 + lam) * S * (v[:k] * S - 1), c]

    constraint = {
        "type": "ineq",
        "fun": lambda v: v[k] - v[:k] ** 2,
        "jac": lambda v: np.c_[-2 * np.diag(v[:k]), np.ones(k)],
    }
    start = np.r_[np.ones(k), 1.0]
    res = minimize(
        fun,
        start,
        jac=jac,
        constraints=[constraint],
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    if not res.success:
        raise RuntimeError(f"SLSQP failed: {res.message}")
    return res.x[:k]


def solve_full(A: np.ndarray, lam: float, eps: float, *, max_iter: int = 20_000) -> FullSolve:
    """Minimise (1+lam)||BA - I||_F^2 + lam eps^2 ||B||_2^2 over all B through the dual."""
    At = torch.as_tensor(A, dtype=torch.float64)
    m, n = At.shape
    c = lam * eps**2
    gram = (1 + lam) * At @ At.T
    eye_n = torch.eye(n, dtype=torch.float64)

    def primal_of(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = M @ M.T / torch.trace(M @ M.T)
        B = (1 + lam) * torch.linalg.solve(gram + c * W, At).T
        return B, W

    def neg_dual(v: np.ndarray) -> tuple[float, np.ndarray]:
        M = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        B, W = primal_of(M.view(m, m))
        value = (1 + lam) * torch.sum((B @ At - eye_n) ** 2) + c * torch.trace(B @ W @ B.T)
        (-value).backward()
        return -float(value.detach()), M.grad.numpy().copy()

    start = np.eye(m).ravel() / np.sqrt(m)
    res = minimize(
        neg_dual,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": 1e-20, "gtol": 1e-14, "maxcor": 50},
    )
    with torch.no_grad():
        B, W = primal_of(torch.as_tensor(res.x, dtype=torch.float64).view(m, m))
    B = B.numpy()
    gap = shared_delta_objective(B, A, lam, eps) - (-res.fun)
    return FullSolve(B=B, gap=float(gap), W=W.numpy(), iterations=int(res.nit))


def worst_case_perturbation(a: np.ndarray, q: np.ndarray, eps: float) -> np.ndarray:
    """argmax_{||d|| <= eps} ||a_i + q * d|| for each row a_i (q >= 0 diagonal), exactly.

    d = (mu I - diag(q)^2)^-1 diag(q) a with mu > max q^2 chosen so that ||d|| = eps.
    ||d|| decreases in s = mu - max q^2 and lies in [||b_top|| / eps, ||b|| / eps]
    (b = q a, b_top its part on the largest q^2), so s is found by bisection on log s.
    """
    q2 = q**2
    gap = q2.max() - q2
    b = q * a
    top = gap <= 1e-12 * q2.max()
    upper = np.log(np.linalg.norm(b, axis=1) / eps + 1e-300)
    lower = np.log(np.linalg.norm(b[:, top], axis=1) / eps + 1e-300)
    lo, hi = np.maximum(lower, upper - 60.0), upper
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        too_long = np.linalg.norm(b / (gap + np.exp(mid)[:, None]), axis=1) > eps
        lo, hi = np.where(too_long, mid, lo), np.where(too_long, hi, mid)
    d = b / (gap + np.exp(hi)[:, None])
    return eps * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)


def per_sample_objective(
    q: np.ndarray, S: np.ndarray, z: np.ndarray, lam: float, eps: float
) -> tuple[float, np.ndarray]:
    """Per-sample objective of B = V diag(q) U^T on z = V^T x (N, m), and its gradient in q.

    The null-space part (1+lam) E||x - V V^T x||^2 does not depend on q and is left out.
    """
    a = z * (q * S - 1)
    d = worst_case_perturbation(a, q, eps)
    r = a + q * d
    value = np.mean(np.sum(a**2, axis=1)) + lam * np.mean(np.sum(r**2, axis=1))
    grad = 2 * np.mean(a * z * S, axis=0) + 2 * lam * np.mean(r * (z * S + d), axis=0)
    return float(value), grad


def solve_per_sample(
    S: np.ndarray, z: np.ndarray, lam: float, eps: float, q0: np.ndarray
) -> np.ndarray:
    """q >= 0 minimising ``per_sample_objective`` (L-BFGS-B from q0)."""
    res = minimize(
        per_sample_objective,
        q0,
        args=(S, z, lam, eps),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * len(S),
        options={"maxiter": 500, "ftol": 1e-14, "gtol": 1e-9},
    )
    return res.x
