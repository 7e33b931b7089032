"""Batched sparse-matrix operator vs per-slice ASTRA, measured side by side.

Per slice, a batch of ``--batch`` slices through A then A^T (torch CSR matrix, int32 indices)
must cost at most 1/8 of one ASTRA CPU call pair (astra.create_sino + astra.create_backprojection,
'linear' projector, same geometry). Repetitions of the two are interleaved so that load from
other processes hits both alike; each figure is the median over ``--repeats`` after a warm-up.

    .venv/bin/python benchmarks/bench_operator.py [--n 256] [--views 143] [--batch 16]

Exits with status 1 when the ratio is below ``--min-ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import astra
import numpy as np
import torch

from ctrobust.physics import ParallelBeam2D


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="image side N")
    p.add_argument("--views", type=int, default=143, help="number of views V")
    p.add_argument("--batch", type=int, default=16, help="slices per batched call")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--min-ratio", type=float, default=8.0, help="required astra/ours ratio")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    op = ParallelBeam2D(args.n, args.views, backend="matrix")
    build_s = time.perf_counter() - start

    vol_geom = astra.create_vol_geom(args.n, args.n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, op.n_det, op.angles)
    projector = astra.create_projector("linear", proj_geom, vol_geom)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.n, args.n, generator=gen)
    image = x[0, 0].numpy()

    def ours() -> None:
        op.A_adjoint(op.A(x))

    def theirs() -> None:
        sino_id, sino = astra.create_sino(image, projector)
        vol_id, _ = astra.create_backprojection(sino, projector)
        astra.data2d.delete([sino_id, vol_id])

    with torch.no_grad():
        ours()  # warm-up
        theirs()
        t_ours, t_astra = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours()
            t_ours.append((time.perf_counter() - t) / args.batch)
            t = time.perf_counter()
            theirs()
            t_astra.append(time.perf_counter() - t)
        sino_id, reference = astra.create_sino(image, projector)
        astra.data2d.delete(sino_id)
        mismatch = np.abs(op.A(x[:1])[0, 0].numpy() - reference).max() / np.abs(reference).max()
    astra.projector.delete(projector)

    ours_s, astra_s = statistics.median(t_ours), statistics.median(t_astra)
    ratio = astra_s / ours_s
    nnz = op.weights.values().numel()
    print(f"geometry: N={args.n} V={args.views} D={op.n_det}  nnz(W)={nnz:,}")
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} ({threads} threads), astra {astra.__version__}")
    print(f"max relative difference of A x from ASTRA's sinogram: {mismatch:.1e}")
    print(f"matrix build (ASTRA + CSR, first in process): {build_s:.2f} s")
    print(
        f"ours  (batch {args.batch}, A + A^T) per slice: {ours_s * 1e3:8.3f} ms  (median of"
        f" {args.repeats}; min {min(t_ours) * 1e3:.3f})"
    )
    print(
        f"ASTRA (create_sino + create_backprojection) per slice: {astra_s * 1e3:8.3f} ms  "
        f"(median of {args.repeats}; min {min(t_astra) * 1e3:.3f})"
    )
    ok = ratio >= args.min_ratio
    print(
        f"ratio astra/ours = {ratio:.1f}  (required >= {args.min_ratio:g}): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
