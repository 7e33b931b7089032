"""Crash-safe output: a file or a folder appears complete or not at all.

Files are written to a temporary name in the destination folder and moved into
place with `os.replace` (atomic on POSIX within one file system). Folders are built
under a temporary sibling name and renamed into place; replacing an existing folder
moves the old one aside first, so a reader never sees a half-written mix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(fh)` on a temporary file beside `path`, then move it onto `path`.

    The file gets the permissions a plain ``open(path, "w")`` would give (mkstemp's
    are owner-only), so reports and exports stay readable by the user's group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if error.filename is None:  # name the file the user knows, not the temporary one
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


@contextlib.contextmanager
def atomic_dir(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `path` when the block succeeds.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False (checked before and after).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"output folder exists, not overwritten: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"output folder appeared while writing: {path}")
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "replaced")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
