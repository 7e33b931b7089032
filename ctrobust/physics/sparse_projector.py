"""ASTRA's 'linear' projector as an explicit sparse system matrix applied by torch.

ASTRA builds W (V*D x N*N) once per geometry (``astra.projector.matrix``); torch then applies
W and W^T to a whole batch in one sparse-dense product, on CPU or CUDA. Both W and W^T are
kept as CSR with int32 indices (half the memory of int64 and, measured on CPU, faster).
ASTRA's weights are float32 numbers, so they are stored as float32 and widened on demand.
W^T may label its columns detector-major (:func:`adjoint_columns`): the same entries in the
same order, read from a transposed sinogram.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal

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


AdjointColumns = Literal["view", "detector"]

RELABEL_CHUNK = 1 << 18
"""Column indices relabelled per step (1 MB of temporaries): relabelling adds nothing to the
build or load peak however large W^T is (472 M indices at 512 x 1000 views)."""


MAX_BIN_MOVE_FOR_DETECTOR_MAJOR = 2.0
"""Detector-major W^T from this largest bin move between neighbouring views on (measured: at
1.4 bins faster, at 2.8 slower; see :func:`adjoint_columns`)."""


def adjoint_columns(n: int, n_views: int, device: torch.device) -> AdjointColumns:
    """How W^T labels its columns (the sinogram entry (k, d) it reads) for a geometry and device.

    A row of W^T is one pixel; its entries run over the views in order, and between neighbouring
    views the pixel's detector bin moves by up to pi N / (2 V) bins (at the image's edge).
    Labelled view-major (k D + d), neighbouring entries lie D floats apart in the sinogram, a
    cache line each; labelled detector-major (d V + k), they are a few floats apart while that
    move is small. Relabelling moves no entry, so each row is summed in the same order and the
    product is the same bit for bit.

    Measured (``benchmarks/bench_small_batch.py``, torch 2.13 MKL, 2 cores, float32, A^T of one
    sample, view-major -> detector-major, largest move in brackets): 128 x 1000 views
    14.2 -> 8.4 ms (0.2 bins), 128 x 300 2.8 -> 2.2 ms (0.7), 512 x 1000 222 -> 164 ms (0.8),
    128 x 143 1.33 -> 1.07 ms (1.4); but 256 x 143 3.3 -> 4.6 ms (2.8) and 512 x 143
    20.9 -> 22.6 ms (5.6). Hence detector-major up to a move of
    :data:`MAX_BIN_MOVE_FOR_DETECTOR_MAJOR` bins, i.e. from V >= pi N / 4 views. Detector-major
    rows are not sorted by column, which MKL accepts; off the CPU W^T keeps the sorted
    view-major labels (cuSPARSE expects sorted rows, and the layout was measured on CPUs only).
    """
    largest_move = math.pi * n / (2 * n_views)
    small_move = largest_move <= MAX_BIN_MOVE_FOR_DETECTOR_MAJOR
    return "detector" if small_move and device.type == "cpu" else "view"


def _relabel_in_place(
    cols: np.ndarray | torch.Tensor, n_views: int, n_det: int, to: AdjointColumns
) -> None:
    """Column labels k D + d -> d V + k (``to="detector"``) or back (``to="view"``), in place,
    a chunk at a time (numpy arrays at build time, tensors on a device move)."""
    period, stride = (n_det, n_views) if to == "detector" else (n_views, n_det)
    for start in range(0, len(cols), RELABEL_CHUNK):
        chunk = cols[start : start + RELABEL_CHUNK]
        low = chunk % period
        chunk //= period
        low *= stride
        chunk += low


def relabel_adjoint_columns(
    wt: torch.Tensor, n_views: int, n_det: int, to: AdjointColumns
) -> torch.Tensor:
    """A new W^T whose columns are labelled ``to``; it shares the row pointers and values."""
    cols = wt.col_indices().clone()
    _relabel_in_place(cols, n_views, n_det, to)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            wt.crow_indices(), cols, wt.values(), size=wt.shape, check_invariants=False
        )


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
    """(W, W^T) as float32 CPU CSR tensors; cached in-process, and on disk under ``cache_dir``.
    W^T's columns are labelled as :func:`adjoint_columns` says for the CPU."""
    w = _load_or_build(n, n_views, n_det, cache_dir)
    wt = w.T.tocsr()
    wt.sort_indices()
    columns = adjoint_columns(n, n_views, torch.device("cpu"))
    if columns != "view":  # numpy, in place: no torch thread pool, no copy at the load peak
        _relabel_in_place(wt.indices, n_views, n_det, columns)
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
