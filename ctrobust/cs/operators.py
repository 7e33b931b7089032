"""Compressive-sensing measurement matrices of Raj et al. Sec. 4.1-4.2 as measurement operators.

A :class:`MatrixOperator` maps images (B, 1, s, s) to measurements y = A vec(x), (B, m), and
back with the adjoint A^T y. The attacks (:func:`ctrobust.attacks.measurement_pga`) and the
G/f engine (:func:`ctrobust.training.adversarial.create_adversarial_trainer`) only see
reconstructors y -> x and batches of y, so they apply to these operators unchanged.

* :func:`gaussian`: A_ij ~ N(0, 1/m) (Sec. 4.1, after Bora et al. 2017); condition number
  about (sqrt(n/m) + 1) / (sqrt(n/m) - 1), 2.1 at 100 x 784.
* :func:`dct_rows_cols`: m random rows and n columns of the p x p orthonormal DCT-II, p >> n
  (Sec. 4.2). With ``columns="first"`` the columns are the first n: over a window of n << p
  samples two rows of close frequency are almost parallel, which is what makes the
  submatrix ill-conditioned (kappa 5-20 at 100 x 784, p = 4n). With ``columns="random"``
  the n columns are spread over all p samples and the submatrix is as well-conditioned as
  the Gaussian (kappa about 2 at every p tried, see docs/cs_conditioning.md), so that
  reading of the paper cannot give its kappa = 8.9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import torch
from torch import Tensor

DctColumns = Literal["first", "random"]


@dataclass(frozen=True)
class MatrixOperator:
    """y = A vec(x) for square images, with the adjoint; ``rows``/``cols`` say where a
    submatrix was taken from (None for the Gaussian).

    Attributes:
        name: short id used in metrics.json ("gaussian", "dct").
        matrix: A, (m, n) float64.
        side: images are side x side, n = side**2 (row-major vec, as ``Tensor.flatten``).
        rows, cols: indices into the p x p DCT (sorted), or None.
        p: size of the DCT the submatrix came from, or None.
    """

    name: str
    matrix: np.ndarray
    side: int
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    p: int | None = None

    def __post_init__(self) -> None:
        if self.matrix.shape[1] != self.side * self.side:
            raise ValueError(f"A has {self.matrix.shape[1]} columns for {self.side}^2 pixels")

    @property
    def m(self) -> int:
        return self.matrix.shape[0]

    @property
    def n(self) -> int:
        return self.matrix.shape[1]

    def tensor(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """A as a tensor on ``device``, float32 unless asked otherwise."""
        return torch.as_tensor(self.matrix, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """y = A vec(x): (B, 1, s, s) -> (B, m), in x's dtype and device."""
        return x.flatten(1) @ self.tensor(x.device, x.dtype).T

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y reshaped to images: (B, m) -> (B, 1, s, s), in y's dtype and device."""
        return apply_adjoint(self.tensor(y.device, y.dtype), y, self.side)

    def singular_values(self) -> np.ndarray:
        """Singular values of A, largest first."""
        return np.linalg.svd(self.matrix, compute_uv=False)

    def condition_number(self) -> float:
        """sigma_max / sigma_min of A (A has full row rank m <= n)."""
        s = self.singular_values()
        return float(s[0] / s[-1])


def apply_adjoint(matrix: Tensor, y: Tensor, side: int) -> Tensor:
    """A^T y for a (m, n) tensor A and (B, m) measurements, as (B, 1, side, side) images."""
    return (y @ matrix).view(y.shape[0], 1, side, side)


def _side(n: int) -> int:
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"n = {n} is not the pixel count of a square image")
    return side


def gaussian(m: int, n: int, seed: int) -> MatrixOperator:
    """A (m, n) with i.i.d. N(0, 1/m) entries, drawn from numpy's PCG64 at ``seed``."""
    if not 0 < m <= n:
        raise ValueError(f"need 0 < m <= n, got m = {m}, n = {n}")
    rng = np.random.default_rng(seed)
    return MatrixOperator("gaussian", rng.normal(0.0, 1.0 / np.sqrt(m), (m, n)), _side(n))


def dct_submatrix(p: int, rows: np.ndarray, cols: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Rows ``rows`` and columns ``cols`` of the p x p orthonormal DCT-II (row k frequency k,
    column j sample j): column j is scipy's DCT of the unit vector e_j. Built ``chunk`` columns
    at a time, so memory is p x chunk, not p x p (2 GB at the large size's p = 16384)."""
    out = np.empty((len(rows), len(cols)))
    for start in range(0, len(cols), chunk):
        part = cols[start : start + chunk]
        units = np.zeros((p, len(part)))
        units[part, np.arange(len(part))] = 1.0
        out[:, start : start + len(part)] = scipy.fft.dct(units, norm="ortho", axis=0)[rows]
    return out


def dct_rows_cols(
    m: int, n: int, p: int, seed: int, *, columns: DctColumns = "first"
) -> MatrixOperator:
    """m random rows and n columns (the first n, or n random ones) of the p x p orthonormal
    DCT-II; indices are sorted, rows drawn without replacement from numpy's PCG64 at ``seed``."""
    if not 0 < m <= n < p:
        raise ValueError(f"need 0 < m <= n < p, got m = {m}, n = {n}, p = {p}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(p, size=m, replace=False))
    cols = np.arange(n) if columns == "first" else np.sort(rng.choice(p, size=n, replace=False))
    matrix = dct_submatrix(p, rows, cols)
    return MatrixOperator("dct", matrix, _side(n), rows=rows, cols=cols, p=p)
