"""Which exact backend an iterative method should use: the sparse matrix when it fits memory.

Both backends apply the same ASTRA 'linear' projector, so the choice changes speed and
memory, never results. Iterative methods (TV, SIRT, CGLS) apply A and A^T hundreds of times,
and the batched matrix is several times faster per product than ASTRA's CPU projector
(measured at 512 x 512, 1000 views, one slice: 1.10 s against 4.10 s for A then A^T,
docs/instability.md); what limits it is memory: W and W^T at 512 x 512 and 1000 views take
7.6 GB. So the matrix is used whenever building it fits in a share of the memory available
now, and ASTRA otherwise.

A single pass over many slices (the ground-truth simulation) is different: building the
matrix costs about as much as 40 slices through ASTRA (150 s against 4.1 s per slice at 512 x
512 and 1000 views; 10.8 s against 0.25 s at 128 x 128), so it pays only from that many slices
on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ctrobust.physics.heap import return_free_heap
from ctrobust.physics.parallel_beam import Backend
from ctrobust.physics.sparse_projector import cached_matrix_path, matrix_bytes, view_angles

BUILD_PEAK_FACTOR = 1.8
"""Peak memory of building W and W^T over their final size (``matrix_bytes``): ASTRA's copy
of W lives beside scipy's while it is read out, then W beside W^T. Measured as peak RSS above
the baseline: 1.76 at 128 x 128 x 1000 views and at 256 x 256 x 300 views."""

LOAD_PEAK_FACTOR = 1.1
"""The same when W comes from the disk cache (W^T is still made in-process): measured 1.01 at
128 x 128 x 600 views, so the 1000-view matrix at 512 needs 8.3 GB to load against 13.6 GB to
build."""

BREAK_EVEN_SLICES = 40
"""Slices (one A and one A^T each) whose ASTRA time equals building the matrix (measured)."""

DEFAULT_MEMORY_SHARE = 0.8
"""Share of the available memory the build may take (the rest is for the stage's batches)."""


def available_memory_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for a new matrix: MemAvailable on the host (where the matrix is built), and
    on CUDA also the device's free memory (where it then lives). Freed heap pages are returned
    to the system first, or they would count as used."""
    return_free_heap()
    host = _host_available_bytes()
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(host, int(free))
    return host


def _host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fastest_exact_backend(
    n: int,
    n_views: int,
    n_det: int,
    device: torch.device | str = "cpu",
    share: float = DEFAULT_MEMORY_SHARE,
    available: int | None = None,
    cache_dir: str | None = None,
) -> Backend:
    """``"matrix"`` when making W and W^T for this geometry fits in ``share`` of the available
    memory (``available`` bytes, measured now when None), else ``"astra"``. Loading W from
    ``cache_dir`` needs less than building it (:data:`LOAD_PEAK_FACTOR`); either way the
    result is the same ASTRA projector, and callers record which backend they got."""
    cached = (
        cache_dir is not None and cached_matrix_path(Path(cache_dir), n, n_views, n_det).exists()
    )
    factor = LOAD_PEAK_FACTOR if cached else BUILD_PEAK_FACTOR
    need = factor * matrix_bytes(n, view_angles(n_views), n_det)
    free = available_memory_bytes(device) if available is None else available
    return "matrix" if need <= share * free else "astra"


def single_pass_backend(
    n: int,
    n_views: int,
    n_det: int,
    slices: int,
    device: torch.device | str = "cpu",
    available: int | None = None,
) -> Backend:
    """The backend for one A (and A^T) per slice over ``slices`` slices: the matrix when it
    fits memory and ``slices`` reach :data:`BREAK_EVEN_SLICES`.

    Whether the matrix is already in the disk cache is deliberately not asked: the two
    backends agree only to float32 rounding, and a run's numbers must not depend on what an
    earlier run left in a cache.
    """
    if slices < BREAK_EVEN_SLICES:
        return "astra"
    return fastest_exact_backend(n, n_views, n_det, device, available=available)
