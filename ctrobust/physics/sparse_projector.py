"""ASTRA's 'linear' projector as an explicit sparse system matrix applied by torch.

ASTRA builds W (V*D x N*N) once per geometry (``astra.projector.matrix``); torch then applies
W and W^T to a whole batch in one sparse-dense product, on CPU or CUDA. Both W and W^T are
kept as CSR with int32 indices (half the memory of int64 and, measured on CPU, faster).
ASTRA's weights are float32 numbers, so they are stored as float32 and widened on demand.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import astra
import numpy as np
import scipy.sparse as sp
import torch

from ctrobust.physics.astra_projector import astra_geometries
from ctrobust.physics.heap import return_free_heap
from dicom_io.atomic import atomic_write


def estimate_nnz(n: int, angles: np.ndarray) -> int:
    """Approximate nonzeros of the 'linear' projector matrix.

    Each ray steps once per row (or column) along its major axis and touches two pixels per
    step; summed over unit-width detector pixels this gives ``2 n^2 max(|cos|, |sin|)`` per view.
    """
    return int(2 * n * n * np.maximum(np.abs(np.cos(angles)), np.abs(np.sin(angles))).sum())


def matrix_bytes(n: int, angles: np.ndarray, n_det: int, itemsize: int = 4) -> int:
    """Approximate memory of W and W^T together (int32 indices, ``itemsize``-byte values)."""
    nnz = estimate_nnz(n, angles)
    return 2 * nnz * (4 + itemsize) + 4 * (len(angles) * n_det + n * n + 2)


def build_system_matrix(n: int, angles: np.ndarray, n_det: int) -> sp.csr_matrix:
    """ASTRA's 'linear' projector matrix (V*D x N*N), float32 values, sorted int32 indices."""
    vol_geom, proj_geom = astra_geometries(n, angles, n_det)
    projector_id = astra.create_projector("linear", proj_geom, vol_geom)
    try:
        matrix_id = astra.projector.matrix(projector_id)
        try:
            w = astra.matrix.get(matrix_id)
        finally:
            astra.matrix.delete(matrix_id)
    finally:
        astra.projector.delete(projector_id)
    w = sp.csr_matrix(w, dtype=np.float32)
    w.sum_duplicates()
    w.sort_indices()
    return w


def cached_matrix_path(cache_dir: Path, n: int, n_views: int, n_det: int) -> Path:
    """One file per geometry and ASTRA version (another version may weigh pixels differently)."""
    version = str(getattr(astra, "__version__", "unknown")).replace("/", "_")
    return cache_dir / f"astra{version}_linear_parallel_n{n}_v{n_views}_d{n_det}.npz"


def _load_cached(path: Path, shape: tuple[int, int]) -> sp.csr_matrix | None:
    """The matrix saved at ``path``, or None (with a warning) when it is unreadable or not of
    ``shape``: a damaged cache file costs a rebuild, never a wrong operator."""
    try:
        with np.load(path) as z:
            w = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    except (OSError, ValueError, KeyError) as error:
        warnings.warn(
            f"projector matrix cache {path} is unreadable ({error}); rebuilding", stacklevel=2
        )
        return None
    if w.shape != shape:
        warnings.warn(
            f"projector matrix cache {path} holds shape {w.shape}, not {shape}", stacklevel=2
        )
        return None
    return w


def _save_cached(path: Path, w: sp.csr_matrix) -> None:
    """Save ``w`` atomically (a concurrent reader never sees half a file); best effort: a full
    disk or a read-only cache folder only costs the next process a rebuild."""
    try:
        atomic_write(
            path,
            lambda fh: np.savez(
                fh, data=w.data, indices=w.indices, indptr=w.indptr, shape=np.array(w.shape)
            ),
        )
    except OSError as error:
        warnings.warn(f"projector matrix not cached at {path}: {error}", stacklevel=2)


def _load_or_build(n: int, n_views: int, n_det: int, cache_dir: str | None) -> sp.csr_matrix:
    angles = view_angles(n_views)
    if cache_dir is None:
        return build_system_matrix(n, angles, n_det)
    path = cached_matrix_path(Path(cache_dir), n, n_views, n_det)
    w = _load_cached(path, (n_views * n_det, n * n)) if path.exists() else None
    if w is None:
        w = build_system_matrix(n, angles, n_det)
        _save_cached(path, w)
    return w


def view_angles(n_views: int) -> np.ndarray:
    """Views uniform in [0, pi), radians."""
    return np.linspace(0.0, math.pi, n_views, endpoint=False)


def _to_torch_csr(w: sp.csr_matrix) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            # copy=False: scipy's arrays are shared, not duplicated (W^T at 512 x 1000 views
            # is 3.8 GB; a copy of each would double the peak of building the pair)
            torch.from_numpy(w.indptr.astype(np.int32, copy=False)),
            torch.from_numpy(w.indices.astype(np.int32, copy=False)),
            torch.from_numpy(w.data.astype(np.float32, copy=False)),
            size=w.shape,
            check_invariants=False,  # scipy already sorted and de-duplicated the indices
        )


@lru_cache(maxsize=8)
def system_matrices(
    n: int, n_views: int, n_det: int, cache_dir: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, W^T) as float32 CPU CSR tensors; cached in-process, and on disk under ``cache_dir``."""
    w = _load_or_build(n, n_views, n_det, cache_dir)
    wt = w.T.tocsr()
    wt.sort_indices()
    return _to_torch_csr(w), _to_torch_csr(wt)


def release_matrices() -> None:
    """Drop the in-process matrices and return their memory to the system (operators still in
    use keep theirs): a stage calls this when it is done with a large geometry."""
    system_matrices.cache_clear()
    return_free_heap()


MATVEC_MAX_BATCH = 2
"""Up to this many samples a CPU product runs as one sparse matrix-vector product per sample.

Measured with torch 2.13 (MKL) on 2 cores, float32, ASTRA's 128 x 128 matrices: for one sample
the matrix-vector kernel was 2.3-2.7x faster than the sparse-dense product of a (K, 1) block
(1000 views: W 11.4 vs 26.7 ms, W^T 12.1 vs 19.1 ms), 1.4-2.6x in a later, noisier run. For
two samples it is close to a tie (A + A^T at 143, 300, 1000 views: 3.0 vs 4.6, 6.7 vs 10.3,
47.9 vs 45.0 ms; 512 x 143 views: 113 vs 123 ms) and goes either way between runs; from four on
the one-pass product wins. ``benchmarks/bench_small_batch.py`` measures both side by side.
"""


def picks_matvec(batch: int, device: torch.device) -> bool:
    """Whether :func:`csr_matmul` runs a batch of this size as matrix-vector products."""
    return batch <= MATVEC_MAX_BATCH and device.type == "cpu"


def matvec_per_sample(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w @ vec(x_b)`` as one sparse matrix-vector product per sample: (B, ...) -> (B, M)."""
    return torch.stack([torch.mv(w, sample.reshape(-1)) for sample in x])


def one_pass_product(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w @ vec(x_b)`` for all samples in one pass over ``w``: (B, ...) -> (B, M).

    The samples become the columns of one (K, B) block, so every sparse row is applied to all B
    samples at once. That layout costs one copy whatever ``x``'s strides (a cropped or
    transposed view is fine); the result is the transposed view of the (M, B) product, which
    reshapes to (B, ...) without another copy.
    """
    batch = x.shape[0]
    columns = x.permute(*range(1, x.dim()), 0).reshape(-1, batch)
    return (w @ columns).T


def csr_matmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w @ vec(x_b)`` for every sample of a batch ``x`` (B, ...) -> (B, M), by the faster
    kernel for the batch (:func:`picks_matvec`): small CPU batches as matrix-vector products,
    the rest in one pass over the matrix."""
    if picks_matvec(x.shape[0], x.device):
        return matvec_per_sample(w, x)
    return one_pass_product(w, x)
