"""Read a clinical export folder: every axial CT series, and every file left out with why."""

from __future__ import annotations

import os
from pathlib import Path

from dicom_io.assemble import assemble
from dicom_io.classify import SliceRecord, read_slice
from dicom_io.series import CTSeries, IngestReport, SkippedFile


def _files(root: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Every file under `root`, in a stable order, and the hidden folders not entered.

    Hidden folders (".name") are left out whole: they hold editor, OS or interrupted
    ctrobust writes (".out.partial"), never part of a clinical export.
    """
    if root.is_file():
        return [root], []
    found: list[Path] = []
    hidden: list[SkippedFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(d for d in dirnames if d.startswith(".")):
            hidden.append(SkippedFile(Path(dirpath) / name, "hidden folder, not scanned"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return found, hidden


def scan_folder(path: str | os.PathLike) -> IngestReport:
    """Read every file under `path` (recursively) and assemble the axial CT series.

    Never stops at a bad file: non-DICOM files, DICOMDIRs, localizers, secondary
    captures, other modalities, files without or with undecodable pixel data,
    duplicates and refused (tilted) series all end up in `skipped` with a reason.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    files, skipped = _files(root)
    records: list[SliceRecord] = []
    for file in files:
        try:
            result = read_slice(file)
        except OSError as exc:
            result = SkippedFile(file, f"cannot read file: {exc}")
        if isinstance(result, SkippedFile):
            skipped.append(result)
        else:
            records.append(result)
    series, left_out = assemble(records)
    skipped.extend(left_out)
    skipped.sort(key=lambda s: str(s.path))
    return IngestReport(series=series, skipped=skipped)


def read_folder(path: str | os.PathLike) -> list[CTSeries]:
    """The axial CT series under `path` (see `scan_folder` for the skipped files)."""
    return scan_folder(path).series
