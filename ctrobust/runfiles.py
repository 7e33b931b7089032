"""Run-folder files: JSON and tensors, written atomically, loaded without pickled code."""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from dicom_io.atomic import atomic_write


def atomic_write_json(path: Path, data: Any) -> None:
    """Write strict JSON atomically: indented, keys in order, no NaN (undefined is null)."""
    atomic_write(
        path, lambda fh: fh.write((json.dumps(data, indent=2, allow_nan=False) + "\n").encode())
    )


class RefusedFileError(ValueError):
    """A run file that a weights-only load refused: it holds more than tensors and plain data."""


def save_tensors(path: Path, data: dict[str, Any]) -> None:
    """torch.save atomically; load with :func:`load_tensors` (weights_only).

    torch reports a failed write (a full disk) as a RuntimeError from its zip writer; it
    becomes an OSError naming the file.
    """
    try:
        atomic_write(path, lambda fh: torch.save(data, fh))
    except RuntimeError as error:
        if "inline_container" not in str(error) and "write" not in str(error).lower():
            raise
        raise OSError(errno.ENOSPC, "could not write (disk full?)", str(path)) from error


def load_tensors(
    path: Path, *, mmap: bool = False, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Load what :func:`save_tensors` (or ignite's checkpoint saver) wrote, without executing
    pickled code; a file holding more than tensors and plain data is refused, named.

    ``mmap=True`` maps the tensors from disk instead of reading them, for callers
    that look at a few slices of a large file (paper-scale runs).
    """
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        # torch's message ends with advice to load with weights_only=False: the wrong advice
        # for a file that may have been tampered with, so only its first line is kept
        reason = str(error).splitlines()[0]
        raise RefusedFileError(
            f"{path}: refused, it holds more than tensors ({reason}); delete it and re-run"
        ) from None
