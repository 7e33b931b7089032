"""Run-folder files: JSON and tensors, written atomically, loaded without pickled code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dicom_io.atomic import atomic_write


def atomic_write_json(path: Path, data: Any) -> None:
    """Write strict JSON atomically: indented, keys in order, no NaN (undefined is null)."""
    atomic_write(
        path, lambda fh: fh.write((json.dumps(data, indent=2, allow_nan=False) + "\n").encode())
    )


def save_tensors(path: Path, data: dict[str, Any]) -> None:
    """torch.save atomically; load with :func:`load_tensors` (weights_only)."""
    atomic_write(path, lambda fh: torch.save(data, fh))


def load_tensors(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load what :func:`save_tensors` wrote, without executing pickled code.

    ``mmap=True`` maps the tensors from disk instead of reading them, for callers
    that look at a few slices of a large file (paper-scale runs).
    """
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
