"""Leftovers of a killed run: temporary files and half-written folders, removed before a re-run.

Every writer of the run folder leaves a recognisable name while it works: atomic file writes
``.<name>.<random>.tmp``, atomic folders ``.<name>.<random>.partial`` (and ``.old`` while
replacing), the runner's ``cache/<stage>.partial``, and ignite's checkpoint saver ``tmp*``
files beside the checkpoints. A run folder has one writer at a time, so at the start of a run
anything with those names belongs to a process that is gone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_ATOMIC = re.compile(r"^\..+\.[A-Za-z0-9_]+\.(tmp|partial|old)$")
_IGNITE_TMP = re.compile(r"^tmp[A-Za-z0-9_]+$")


def _is_debris(path: Path, run_dir: Path) -> bool:
    if _ATOMIC.match(path.name):
        return True
    relative = path.relative_to(run_dir).parts
    if len(relative) == 2 and relative[0] == "cache" and path.name.endswith(".partial"):
        return True
    return (
        len(relative) == 3 and relative[0] == "checkpoints" and bool(_IGNITE_TMP.match(path.name))
    )


def remove_debris(run_dir: Path) -> list[Path]:
    """Delete the leftovers of killed writers under ``run_dir``; returns what was removed."""
    if not run_dir.is_dir():
        return []
    found = sorted(
        (p for p in run_dir.rglob("*") if _is_debris(p, run_dir)), key=lambda p: len(p.parts)
    )
    removed: list[Path] = []
    for path in found:
        if any(parent in removed for parent in path.parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
