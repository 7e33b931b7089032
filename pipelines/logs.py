"""Logging of a run: the console (unless quiet) and RUN_DIR/log.txt, from rank 0 only."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(
    run_dir: Path | None, quiet: bool, debug: bool, main: bool = True
) -> logging.Logger:
    """The ``ctrobust`` logger; processes other than rank 0 only report warnings."""
    log = logging.getLogger("ctrobust")
    log.handlers.clear()
    log.setLevel(logging.DEBUG)
    log.propagate = False
    console = logging.StreamHandler(sys.stderr)
    level = logging.DEBUG if debug else logging.WARNING if quiet or not main else logging.INFO
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    logging.getLogger("ignite").setLevel(logging.DEBUG if debug else logging.WARNING)
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(run_dir / "log.txt")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file)
    return log
