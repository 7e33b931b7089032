"""Atomic writes for run-folder files: a reader never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON (indented, keys in insertion order) atomically."""
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def save_tensors(path: Path, data: dict[str, Any]) -> None:
    """torch.save atomically; load with :func:`load_tensors` (weights_only)."""
    _atomic(path, lambda tmp: torch.save(data, tmp))


def load_tensors(path: Path) -> dict[str, Any]:
    """Load what :func:`save_tensors` wrote, without executing pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True)
