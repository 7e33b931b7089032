"""The linear set-up of Raj et al. Sec. 4.5: x ~ N(0, I_20), y = A x, A ill-conditioned.

A (10 x 20) has i.i.d. N(0, 1/10) entries (variance 1/m, m = 10 measurements, as in the
paper's Sec. 4.1), and its two smallest singular values are replaced by 1e-3 and 1e-4,
keeping the singular vectors. Everything is float64 numpy, drawn from one seeded
``numpy.random.Generator``.

``normalize=True`` centres the drawn samples and whitens them so that their sample mean is
exactly 0 and their sample covariance (1/N sum x x^T) exactly I. Theorem 1 assumes
E x = 0 and Cov x = I, and the shared-delta objective depends on the data only through
these two moments, so with normalised samples the empirical objective that training
minimises has exactly the closed-form optimum. Without it, the finite-sample optimum
differs from the closed form by O(1/sqrt(N)) (measured in docs/linear_theory.md).

``antithetic=True`` draws N/2 samples and stores each next to its negative (rows 2k and
2k + 1 are x_k and -x_k; N(0, I) is symmetric, so the set is still a sample of it). Any
batch made of whole pairs then has a sample mean of exactly 0, which removes the largest
gradient noise of the adversarial term with a shared delta: mean_batch(B A x - x) delta^T,
driven by the 10-dimensional null space of A that no B can reconstruct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearProblem:
    """A = U diag(S) V^T (thin SVD, S descending) and the samples x (N, n), y = x A^T (N, m)."""

    A: np.ndarray
    U: np.ndarray
    S: np.ndarray
    V: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return self.A.shape[1]

    @property
    def m(self) -> int:
        return self.A.shape[0]


def make_problem(
    seed: int = 0,
    *,
    n: int = 20,
    m: int = 10,
    n_samples: int = 50_000,
    small_singular_values: Sequence[float] = (1e-3, 1e-4),
    entry_variance: float | None = None,
    normalize: bool = True,
    antithetic: bool = True,
) -> LinearProblem:
    """Draw A and the samples; ``entry_variance`` defaults to 1/m."""
    if antithetic and n_samples % 2:
        raise ValueError(f"antithetic sampling needs an even n_samples, got {n_samples}")
    if m > n:
        raise ValueError(f"expects a wide A (m <= n), got m={m}, n={n}")
    small = sorted((float(s) for s in small_singular_values), reverse=True)
    if len(small) >= m:
        raise ValueError("replace fewer singular values than there are")
    rng = np.random.default_rng(seed)
    variance = 1.0 / m if entry_variance is None else float(entry_variance)
    U, S, Vt = np.linalg.svd(rng.normal(0.0, np.sqrt(variance), (m, n)), full_matrices=False)
    S = S.copy()
    if small:
        S[m - len(small) :] = small
    order = np.argsort(S)[::-1]
    U, S, V = U[:, order], S[order], Vt.T[:, order]
    A = (U * S) @ V.T
    if antithetic:
        half = rng.standard_normal((n_samples // 2, n))
        x = np.stack([half, -half], axis=1).reshape(n_samples, n)
    else:
        x = rng.standard_normal((n_samples, n))
    if normalize:
        x = x - x.mean(axis=0)
        evals, evecs = np.linalg.eigh(x.T @ x / n_samples)
        x = x @ (evecs / np.sqrt(evals)) @ evecs.T
    return LinearProblem(A=A, U=U, S=S, V=V, x=x, y=x @ A.T)
