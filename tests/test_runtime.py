"""Process settings of every run: freed tensor memory is recycled, subnormals are flushed.

Each check runs in a fresh interpreter, because the settings are process-wide and sticky.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PAGE_FAULTS_OF_A_LOOP = textwrap.dedent(
    """
    import resource, sys, torch
    from ctrobust.runtime import tune_cpu_runtime
    if sys.argv[1] == "tuned":
        assert tune_cpu_runtime()
    def loop(times):  # a 64 MiB tensor allocated, written and freed, as activations are
        for _ in range(times):
            torch.empty(2**24).fill_(1.0)
    loop(10)  # let the heap reach its working size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loop(5)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def minor_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PAGE_FAULTS_OF_A_LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_stops_refaulting_freed_tensors():
    pages_touched = 5 * (2**24 * 4) // 4096
    tuned, untuned = minor_faults("tuned"), minor_faults("untuned")
    print(f"minor page faults over 5 x 64 MiB: tuned {tuned}, glibc defaults {untuned}")
    assert tuned < 0.01 * pages_touched
    assert untuned > tuned


def test_subnormals_are_flushed():
    code = (
        "import torch; from ctrobust.runtime import tune_cpu_runtime; tune_cpu_runtime(); "
        "print(float(torch.tensor([1e-39]) * 3.0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 0.0
