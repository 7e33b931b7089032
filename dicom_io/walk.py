"""List the files of a clinical folder: recursively, in a stable order, following symlinks.

Shared by the reader (`scan_folder`) and the input fingerprint (`folder_digest`), so
both see exactly the same files. Symlinked folders are followed; a folder reached a
second time (a symlink loop, or two links to one folder) is listed once with a reason
and not entered again. Hidden folders (".name") are not entered: they hold editor, OS
or interrupted ctrobust writes (".out.partial"), never part of a clinical export.
Anything that is not a regular file (FIFO, socket, device, dangling link) is listed
with what it is and never opened: opening a FIFO would block the scan.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FolderListing:
    """Regular files to read, and the entries left out with why."""

    files: list[Path] = field(default_factory=list)
    left_out: list[tuple[Path, str]] = field(default_factory=list)


def _not_regular(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "not a regular file: a FIFO (named pipe), not read"
    if stat.S_ISSOCK(mode):
        return "not a regular file: a socket, not read"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file: a device, not read"
    return "not a regular file, not read"


def _visit(folder: Path, seen: dict[tuple[int, int], Path], out: FolderListing) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        out.left_out.append((folder, f"folder not readable: {exc.strerror or exc}"))
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            info = os.stat(path)  # follows symlinks
        except OSError as exc:
            what = "dangling symlink" if entry.is_symlink() else "cannot stat"
            out.left_out.append((path, f"{what}: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(info.st_mode):
            if entry.name.startswith("."):
                out.left_out.append((path, "hidden folder, not scanned"))
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                out.left_out.append(
                    (path, f"folder already scanned as {seen[key]} (symlink loop or second link)")
                )
                continue
            seen[key] = path
            _visit(path, seen, out)
        elif stat.S_ISREG(info.st_mode):
            out.files.append(path)
        else:
            out.left_out.append((path, _not_regular(info.st_mode)))


def list_folder(root: Path) -> FolderListing:
    """Every regular file under `root` (or `root` itself when it is a file)."""
    out = FolderListing()
    info = os.stat(root)
    if stat.S_ISDIR(info.st_mode):
        _visit(root, {(info.st_dev, info.st_ino): root}, out)
    elif stat.S_ISREG(info.st_mode):
        out.files.append(root)
    else:
        out.left_out.append((root, _not_regular(info.st_mode)))
    return out
