"""Closed-form optimum of the shared-delta objective (Raj et al. eq. 11, Theorem 1).

For f = B and one perturbation delta shared by all samples (E x = 0, Cov x = I)::

    J(B) = E||BAx - x||^2 + lam max_{||delta|| <= eps} E||B(Ax + delta) - x||^2
         = (1 + lam) ||BA - I||_F^2 + lam eps^2 ||B||_2^2

(the cross term 2 E[(BA - I)x]^T B delta vanishes because E x = 0). With A = U S V^T the
minimiser is B = V diag(q) U^T with q_i = min(1/S_i, t): the largest entries of the
pseudo-inverse (those of the m smallest S_i) are clipped to one water level

    t = sum_{i<=m} S_i / (sum_{i<=m} S_i^2 + lam/(1+lam) eps^2)      (paper's eq. 9, q_m)

where m is the unique count (S ascending) with 1/S_{m+1} <= t < 1/S_m. The derivation is
in docs/linear_theory.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WaterLevel:
    """Filtered inverse singular values q (same order as S), clipped count m, level t."""

    q: np.ndarray
    m: int
    level: float


def shared_delta_objective(B: np.ndarray, A: np.ndarray, lam: float, eps: float) -> float:
    """(1 + lam) ||BA - I||_F^2 + lam eps^2 ||B||_2^2."""
    residual = B @ A - np.eye(A.shape[1])
    return float((1 + lam) * np.sum(residual**2) + lam * eps**2 * np.linalg.norm(B, 2) ** 2)


def paper_level(S: np.ndarray, m: int, lam: float, eps: float) -> float:
    """Eq. (9): q_m = sum_{i<=m} S_i / (sum_{i<=m} S_i^2 + lam/(1+lam) eps^2), S ascending."""
    smallest = np.sort(np.asarray(S, dtype=float))[:m]
    return float(smallest.sum() / (np.sum(smallest**2) + lam / (1 + lam) * eps**2))


def water_filling(S: np.ndarray, lam: float, eps: float) -> WaterLevel:
    """Optimal q for the shared-delta objective: clip 1/S_i at the consistent level."""
    S = np.asarray(S, dtype=float)
    if np.any(S <= 0):
        raise ValueError("singular values must be positive")
    ascending = np.sort(S)
    for m in range(1, len(S) + 1):
        level = paper_level(S, m, lam, eps)
        floor = 1.0 / ascending[m] if m < len(S) else 0.0
        if floor <= level < 1.0 / ascending[m - 1]:
            return WaterLevel(q=np.minimum(1.0 / S, level), m=m, level=level)
    raise RuntimeError("no consistent water level (cannot happen for eps > 0)")


def robust_inverse(A: np.ndarray, lam: float, eps: float) -> tuple[np.ndarray, WaterLevel]:
    """B = V diag(q) U^T minimising the shared-delta objective, and its water level."""
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    wl = water_filling(S, lam, eps)
    return (Vt.T * wl.q) @ U.T, wl
