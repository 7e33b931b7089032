"""Process-wide CPU settings for long tensor workloads: subnormal floats and glibc's allocator.

torch allocates CPU tensors with ``malloc``. glibc serves blocks above a threshold that adapts
between 128 KiB and 32 MiB with fresh ``mmap`` pages and unmaps them on ``free``, and it
trims the heap's free top back to the kernel; either way the next iteration of an attack or a
training step faults every page of its activations in again, zero-filled by the kernel.
PyTorch's CPU tuning guide answers with jemalloc or tcmalloc through LD_PRELOAD; these need a
system package and a wrapper, so instead glibc is told (``mallopt``) to serve every block from
its heap, never from ``mmap``, and to keep up to 1 GiB of freed memory at the heap's top. The
price is memory the process keeps after its peak, which a pipeline run reuses anyway.
The effect is measured side by side in docs/attacks.md (benchmark section).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

M_TRIM_THRESHOLD = -1  # parameter numbers of glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1024**3


def keep_freed_memory() -> bool:
    """Ask glibc to recycle freed tensor memory instead of returning it; False where it can't.

    Only glibc has ``mallopt`` with these parameters; on other C libraries (musl, macOS) this
    does nothing and says so.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # mallopt's parameters are glibc's
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    no_mmap = mallopt(M_MMAP_MAX, 0) == 1
    kept = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return no_mmap and kept


def tune_cpu_runtime() -> bool:
    """The settings every run and benchmark uses; returns whether the allocator was tuned.

    Subnormal floats are flushed to zero: Adam with beta1 = 0.5 drives dead-ReLU weights of the
    generator to subnormals, which made CPU epochs 20-40x slower
    (docs/adversarial_training.md); flushing them costs nothing.
    """
    torch.set_flush_denormal(True)
    return keep_freed_memory()


def flushing_denormals() -> bool:
    """Whether this thread flushes subnormal floats (torch can set the flag but not read it)."""
    return float(torch.tensor([1e-39]) * 3.0) == 0.0
