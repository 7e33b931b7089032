"""Compare a trained B^ with the optimum B (Raj et al. Sec. 4.5): whole matrix and per direction."""

from __future__ import annotations

import numpy as np


def condition_number(B: np.ndarray) -> float:
    """sigma_max / sigma_min over the min(shape) singular values."""
    sv = np.linalg.svd(B, compute_uv=False)
    return float(sv[0] / sv[-1])


def paper_metrics(B_hat: np.ndarray, B: np.ndarray, A: np.ndarray) -> dict[str, float]:
    """The paper's figures: relative errors (Frobenius, spectral), residual ratio, kappas."""
    eye = np.eye(A.shape[1])
    return {
        "rel_err_fro": float(np.linalg.norm(B_hat - B) / np.linalg.norm(B)),
        "rel_err_spec": float(np.linalg.norm(B_hat - B, 2) / np.linalg.norm(B, 2)),
        "residual_ratio": float(np.linalg.norm(eye - B @ A) / np.linalg.norm(eye - B_hat @ A)),
        "kappa_B": condition_number(B),
        "kappa_B_hat": condition_number(B_hat),
    }


def per_direction(
    B_hat: np.ndarray, q: np.ndarray, U: np.ndarray, S: np.ndarray, V: np.ndarray
) -> list[dict[str, float]]:
    """For each singular direction i of A: the target q_i, the trained V_i^T B^ U_i, and the
    rest of the column B^ U_i (off-diagonal and null-space part), i.e. where B^ misses."""
    rows = []
    for i in range(len(S)):
        column = B_hat @ U[:, i]
        q_hat = float(V[:, i] @ column)
        rows.append(
            {
                "S": float(S[i]),
                "q": float(q[i]),
                "q_hat": q_hat,
                "rel_err_q": float(abs(q_hat - q[i]) / abs(q[i])),
                "off_diagonal": float(np.linalg.norm(column - q_hat * V[:, i])),
            }
        )
    return rows
