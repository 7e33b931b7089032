"""Scaling of the sinogram-domain attack: throughput at 1 and 2 processes, memory per slice.

Throughput: the same S slices are attacked by PGA (``--iters`` iterations) through a
small FBPConvNet, sharded over processes (ignite.distributed, gloo); slices per
second = S / wall time of the sharded attack, measured on rank 0 between two barriers,
after a warm-up. Three layouts, side by side in one run:
- 1 process x all threads, 2 processes x half the threads each (what a run uses);
- 1 process x 1 thread against 2 processes x 1 thread: the distributed overhead alone,
  with intra-op threading out of the comparison (ideal: 2x on 2 free cores);
- the hardware ceiling of that comparison: 2 independent processes x 1 thread with no
  distributed layer at all (plain multiprocessing, one barrier before the clock starts),
  each attacking its half. What these reach over 1 x 1 is what the cores and their shared
  memory bandwidth allow; ignite/gloo's own cost is the gap between this row and the one above.

Memory per slice: peak resident memory (CPU) or peak allocated memory (CUDA) of one
PGA iteration at batch 1 and batch 4, each in a fresh process; (peak4 - peak1) / 3 is
what one more slice costs (the operator's matrices and the weights are shared).

    .venv/bin/python benchmarks/bench_scaling.py [--n 128] [--slices 16] [--iters 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

import ignite.distributed as idist
import torch

from ctrobust.attacks import measurement_pga
from ctrobust.models import FBPConvNet, build_residual_unet
from ctrobust.physics import ParallelBeam2D
from ctrobust.runtime import tune_cpu_runtime


def _model(n: int, views: int, device: torch.device) -> FBPConvNet:
    torch.manual_seed(0)
    op = ParallelBeam2D(n, views, device=device)
    return FBPConvNet(op, build_residual_unet((16, 32, 64, 128)).to(device).eval())


def _data(f: FBPConvNet, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(count, 1, f.operator.n, f.operator.n, generator=generator).to(device)
    return f.operator.A(x), x


def _throughput_worker(local_rank: int, args: argparse.Namespace, threads: int, out: str) -> None:
    tune_cpu_runtime()  # as every run's process does
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    f = _model(args.n, args.views, device)
    y, x = _data(f, args.slices, device)
    rows = list(range(idist.get_rank(), args.slices, idist.get_world_size()))
    measurement_pga(f, y[rows[:1]], x[rows[:1]], 0.01, relative=True, n_iter=1)  # warm-up
    idist.barrier()
    start = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        chunk = rows[i : i + args.batch]
        measurement_pga(f, y[chunk], x[chunk], 0.01, relative=True, n_iter=args.iters)
    idist.barrier()
    seconds = time.perf_counter() - start
    if idist.get_rank() == 0:
        with open(out, "w") as handle:
            json.dump({"seconds": seconds}, handle)


def _independent_worker(rank: int, args: argparse.Namespace, barrier, seconds) -> None:
    """One of 2 processes that share nothing but a start barrier: half the slices, 1 thread."""
    tune_cpu_runtime()
    torch.set_num_threads(1)
    f = _model(args.n, args.views, torch.device("cpu"))
    y, x = _data(f, args.slices, torch.device("cpu"))
    rows = list(range(rank, args.slices, 2))
    measurement_pga(f, y[rows[:1]], x[rows[:1]], 0.01, relative=True, n_iter=1)  # warm-up
    barrier.wait()
    start = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        chunk = rows[i : i + args.batch]
        measurement_pga(f, y[chunk], x[chunk], 0.01, relative=True, n_iter=args.iters)
    seconds[rank] = time.perf_counter() - start


def independent_throughput(args: argparse.Namespace) -> float:
    """Slices per second of 2 independent 1-thread processes: all slices / the slower one."""
    ctx = multiprocessing.get_context("spawn")
    barrier, seconds = ctx.Barrier(2), ctx.Array("d", 2)
    workers = [
        ctx.Process(target=_independent_worker, args=(rank, args, barrier, seconds))
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"independent worker exited with {worker.exitcode}")
    return args.slices / max(seconds)


def throughput(args: argparse.Namespace, nproc: int, threads: int | None = None) -> float:
    """Slices per second of the sharded attack in ``nproc`` processes of ``threads`` threads.

    ``threads`` defaults to the cores split evenly between the processes.
    """
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    out = f"/tmp/ctrobust_bench_scaling_{os.getpid()}_{nproc}x{threads}.json"
    with idist.Parallel(backend="gloo", nproc_per_node=nproc) as parallel:
        parallel.run(_throughput_worker, args, threads, out)
    with open(out) as handle:
        seconds = json.load(handle)["seconds"]
    os.unlink(out)
    return args.slices / seconds


def _peak_rss_mib() -> float:
    """VmHWM of this process (Linux), i.e. peak resident memory since the last reset."""
    with open("/proc/self/status") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _memory_child(n: int, views: int, batch: int, device_name: str) -> None:
    """One PGA iteration at this batch size; prints the peak memory of that iteration in MiB.

    Building the operator's matrix peaks higher than the attack, so the peak is reset
    (CUDA: reset_peak_memory_stats; CPU: writing 5 to /proc/self/clear_refs resets
    VmHWM) after set-up and read after the iteration. glibc's allocator keeps its defaults
    here (no ``tune_cpu_runtime``), so memory recycled from set-up does not hide in the peak.
    """
    device = torch.device(device_name)
    f = _model(n, views, device)
    y, x = _data(f, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    measurement_pga(f, y, x, 0.01, relative=True, n_iter=1)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mib()
    print(json.dumps({"peak_mib": peak}))


def memory_per_slice(n: int, views: int, device: str) -> tuple[float, float, float]:
    """(peak at batch 1, peak at batch 4, per-slice increment) in MiB, each in a fresh process."""
    peaks = []
    for batch in (1, 4):
        code = (
            "import sys; sys.argv=['x']; from benchmarks.bench_scaling import _memory_child; "
            f"_memory_child({n}, {views}, {batch}, {device!r})"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        peaks.append(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])
    return peaks[0], peaks[1], (peaks[1] - peaks[0]) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128, help="image size for the throughput test")
    parser.add_argument("--views", type=int, default=143)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4, help="slices per PGA batch and process")
    parser.add_argument("--iters", type=int, default=10, help="PGA iterations per slice")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    print(
        f"attack throughput: n={args.n}, {args.views} views, {args.slices} slices, "
        f"{args.iters} PGA iterations, batch {args.batch}, {os.cpu_count()} cores"
    )
    single = throughput(args, 1)
    double = throughput(args, 2)
    cores = os.cpu_count() or 1
    print(f"  1 process x {cores} threads: {single:.3f} slices/s")
    print(
        f"  2 processes x {max(1, cores // 2)} threads: {double:.3f} slices/s  "
        f"(speed-up {double / single:.2f}x)"
    )
    single_thread = throughput(args, 1, threads=1)
    double_thread = throughput(args, 2, threads=1)
    print(f"  1 process x 1 thread: {single_thread:.3f} slices/s")
    print(
        f"  2 processes x 1 thread: {double_thread:.3f} slices/s  "
        f"(speed-up {double_thread / single_thread:.2f}x: the distributed overhead alone)"
    )
    ceiling = independent_throughput(args)
    print(
        f"  2 independent processes x 1 thread, no distributed layer: {ceiling:.3f} slices/s  "
        f"(speed-up {ceiling / single_thread:.2f}x: what the hardware allows; ignite/gloo keep "
        f"{double_thread / ceiling:.0%} of it)"
    )
    kind = "peak allocated CUDA memory" if args.device.startswith("cuda") else "peak RSS"
    print(f"memory per slice ({kind} of one PGA iteration, (batch 4 - batch 1) / 3):")
    for n in args.memory_sizes:
        one, four, per_slice = memory_per_slice(n, args.views, args.device)
        print(
            f"  {n}x{n}: batch 1 {one:.0f} MiB, batch 4 {four:.0f} MiB -> {per_slice:.0f} MiB/slice"
        )


if __name__ == "__main__":
    main()
