"""A fingerprint of a clinical folder's files, so that a changed folder is noticed.

A run caches what it read; `folder_digest` says whether the folder still holds the
same files: each file's path (relative to the folder), size, modification time and
SOPInstanceUID, over exactly the files `scan_folder` reads. Replacing a slice by
another one (even with the same size and an mtime kept by `cp -p`) changes the UID;
deleting, adding or editing a file changes the rest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pydicom

from dicom_io.pydicom_messages import captured_pydicom_messages
from dicom_io.walk import list_folder


def _sop_instance_uid(path: Path) -> str:
    """The file's SOPInstanceUID, "" when it has none or is not DICOM."""
    try:
        with captured_pydicom_messages():
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # not DICOM, or unreadable: the size and mtime still count
        return ""


def folder_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) over every file's relative path, size, mtime and SOPInstanceUID."""
    root = Path(path)
    listing = list_folder(root)
    digest = hashlib.sha256()
    for file in listing.files:
        info = file.stat()
        name = file.relative_to(root) if file != root else Path(file.name)
        line = f"{name}\t{info.st_size}\t{info.st_mtime_ns}\t{_sop_instance_uid(file)}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    for entry, reason in listing.left_out:
        digest.update(f"{entry.relative_to(root)}\tleft out: {reason}\n".encode(errors="replace"))
    return digest.hexdigest()
