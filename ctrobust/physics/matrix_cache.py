"""Where built projector matrices are kept between processes.

Building ASTRA's matrix is the slowest part of setting up an operator (10 s at 128 x 128 and
1000 views, 150 s at 512 x 512), while loading it back takes a fraction of a second, and the
matrix depends only on the geometry and the ASTRA version (both are in the file name). So
every run keeps them in one user cache folder, like torch keeps downloaded weights in
TORCH_HOME. The cache changes speed, never results, which is why it is a machine setting
(an environment variable) and not part of a run's config or its stage fingerprints.

``CTROBUST_MATRIX_CACHE``: the folder; ``off`` (or empty) builds every matrix afresh.
Default: ``$XDG_CACHE_HOME/ctrobust/matrices``, else ``~/.cache/ctrobust/matrices``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CTROBUST_MATRIX_CACHE"


def matrix_cache_dir() -> str | None:
    """The cache folder for projector matrices, or None when caching is off."""
    setting = os.environ.get(ENV_VAR)
    if setting is not None:
        return None if setting.strip().lower() in ("", "off") else str(Path(setting).expanduser())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "ctrobust" / "matrices")
