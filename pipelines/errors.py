"""How a failed command reads on the terminal: one line, and an exit code that tells who can fix it.

Exit 2: the user can fix it (a config value, a path, a permission, a refused file). Exit 1: the
run failed on its own (a full disk, an internal error): re-running the same command resumes.
"""

from __future__ import annotations

import errno
import pickle

from ctrobust.config import ConfigError
from ctrobust.runfiles import RefusedFileError

EXIT_FAILURE = 1
EXIT_USER_ERROR = 2

_USER_ERRORS = (
    ConfigError,
    RefusedFileError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _os_text(error: OSError) -> str:
    """An OS error with the file it concerns, e.g. "permission denied: runs/x/run.json"."""
    what = (error.strerror or str(error)).lower()
    where = error.filename or ""
    return f"{what}: {where}" if where else str(error)


def explain(error: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of an error, or None when it is a bug to show whole."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        where = f" while writing {error.filename}" if error.filename else ""
        return (
            f"disk full{where}; free some space and re-run the same command to resume",
            EXIT_FAILURE,
        )
    if isinstance(error, pickle.UnpicklingError):
        reason = str(error).splitlines()[0]  # not torch's advice to load with weights_only=False
        return f"refused to load a file that holds more than tensors: {reason}", EXIT_USER_ERROR
    if isinstance(error, _USER_ERRORS):
        text = _os_text(error) if isinstance(error, OSError) else str(error)
        return text, EXIT_USER_ERROR
    if isinstance(error, OSError):
        return _os_text(error), EXIT_FAILURE
    if isinstance(error, RuntimeError):
        return str(error).splitlines()[0], EXIT_FAILURE
    return None
