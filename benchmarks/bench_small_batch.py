"""The CPU product's two choices, each timed against its alternative: kernel and W^T's labels.

``csr_matmul`` sends batches of up to ``MATVEC_MAX_BATCH`` samples through one ``torch.mv``
per sample and larger ones through one product of W with a (K, B) block; and W^T labels the
sinogram entries it reads detector-major from full angular sampling on
(``sparse_projector.adjoint_columns``). This times the two kernels (the functions themselves)
for W and W^T, then the operator's A^T with W^T in each labelling (checking that both give the
same numbers bit for bit), side by side: interleaved repetitions, median of ``--repeats`` after
a warm-up, at each view count and batch size, so both choices can be checked on a machine.

    .venv/bin/python benchmarks/bench_small_batch.py [--n 128] [--views 143 300 1000]

Exits with status 1 when, at batch 1, a choice the operator makes is the slower of the two.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.matrix_cache import matrix_cache_dir
from ctrobust.physics.sparse_projector import (
    MATVEC_MAX_BATCH,
    csr_matmul,
    matvec_per_sample,
    one_pass_product,
    picks_matvec,
    relabel_adjoint_columns,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=128, help="image side N")
    p.add_argument("--views", type=int, nargs="+", default=[143, 300, 1000], help="view counts")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4], help="batch sizes")
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p.parse_args()


def _median_ms(kernels: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each kernel in ms, repetitions interleaved, after one warm-up."""
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for fn in kernels.values():
        fn()
    for _ in range(repeats):
        for name, fn in kernels.items():
            start = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"N={args.n}, {torch.get_num_threads()} threads, float32; csr_matmul uses mv up to "
        f"batch {MATVEC_MAX_BATCH}; median ms of {args.repeats} interleaved repetitions"
    )
    print(f"{'views':>5} {'batch':>5} {'map':>4} {'mv per sample':>14} {'one product':>12}  picked")
    wrong = []
    cache = matrix_cache_dir()
    ops = {v: ParallelBeam2D(args.n, v, backend="matrix", cache_dir=cache) for v in args.views}
    for views, op in ops.items():
        for batch in args.batches:
            for name, w in (("W", op.weights), ("W^T", op.weights_t)):
                x = torch.rand(batch, w.shape[1])
                t = _median_ms(
                    {
                        "mv": lambda w=w, x=x: matvec_per_sample(w, x),
                        "product": lambda w=w, x=x: one_pass_product(w, x),
                    },
                    args.repeats,
                )
                picked = "mv" if picks_matvec(batch, x.device) else "product"
                other = "product" if picked == "mv" else "mv"
                if batch == 1 and t[picked] > t[other]:
                    wrong.append(f"{views} views, {name}")
                print(
                    f"{views:5d} {batch:5d} {name:>4} {t['mv']:14.2f} {t['product']:12.2f}  "
                    f"{picked}{'' if t[picked] <= t[other] else ' (slower here)'}"
                )
    wrong += _adjoint_labels(ops, args.batches, args.repeats)
    if wrong:
        print("at batch 1 the operator's choice is slower for: " + ", ".join(wrong))
    return 1 if wrong else 0


def _adjoint_labels(ops: dict[int, ParallelBeam2D], batches: list[int], repeats: int) -> list[str]:
    """Time A^T with W^T in the operator's labels and in the other ones; return slow choices."""
    print(f"\n{'views':>5} {'batch':>5} {'A^T view-major':>15} {'detector-major':>15}  picked")
    wrong = []
    for views, op in ops.items():
        for batch in batches:
            t, same = _time_both_labels(op, batch, repeats)
            slower = t[op.adjoint_columns] > min(t.values())
            if batch == 1 and slower:
                wrong.append(f"{views} views, A^T labels")
            print(
                f"{views:5d} {batch:5d} {t['view']:15.2f} {t['detector']:15.2f}  "
                f"{op.adjoint_columns}{' (slower here)' if slower else ''}"
                f"{'' if same else ' (NOT bit-identical)'}"
            )
    return wrong


def _time_both_labels(op: ParallelBeam2D, batch: int, repeats: int) -> tuple[dict, bool]:
    """Median ms of A^T in each labelling of W^T, and whether both give the same bits."""
    labels = "view" if op.adjoint_columns == "detector" else "detector"
    other = relabel_adjoint_columns(op.weights_t, op.n_views, op.n_det, labels)
    y = torch.rand(batch, op.n_views, op.n_det)
    read = y.transpose(1, 2) if labels == "detector" else y
    kernels = {
        op.adjoint_columns: lambda: op.A_adjoint(y).flatten(1),
        labels: lambda: csr_matmul(other, read),
    }
    same = torch.equal(kernels["view"](), kernels["detector"]())
    return _median_ms(kernels, repeats), same


if __name__ == "__main__":
    sys.exit(main())
