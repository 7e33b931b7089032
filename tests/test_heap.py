"""Freed heap pages go back to the system (the matrix memory the backend choice measures)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ctrobust.physics.heap import _malloc_trim, return_free_heap


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1)) / 1024


@pytest.mark.skipif(_malloc_trim() is None, reason="not glibc: nothing to trim")
def test_freed_heap_blocks_are_returned_not_kept_resident():
    blocks = [np.ones(4096) for _ in range(6000)]  # 32 KiB each: heap, not mmap; ~190 MiB
    top = np.ones(4096)  # allocated last, so the freed blocks are not at the heap's top
    held = _rss_mib()
    del blocks
    kept = _rss_mib()
    return_free_heap()
    assert held - kept < 50  # glibc keeps them resident on its own
    assert kept - _rss_mib() > 150
    del top
