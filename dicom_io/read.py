"""Read a clinical export folder: every axial CT series, and every file left out with why."""

from __future__ import annotations

import os
from pathlib import Path

from dicom_io.assemble import assemble
from dicom_io.classify import SliceRecord, read_slice
from dicom_io.series import CTSeries, IngestReport, SkippedFile
from dicom_io.walk import list_folder


def _drop_duplicate_uids(records: list[SliceRecord]) -> tuple[list[SliceRecord], list[SkippedFile]]:
    """One file per SOPInstanceUID: later copies (in path order) are reported and left out.

    Two files with one UID are either a copy or a broken export; either way an exported
    slice referencing that UID would be ambiguous, so only the first is kept.
    """
    first: dict[str, SliceRecord] = {}
    kept: list[SliceRecord] = []
    skipped: list[SkippedFile] = []
    for rec in sorted(records, key=lambda r: str(r.path)):
        uid = rec.sop_instance_uid
        if uid and uid in first:
            other = first[uid]
            along = abs(float((rec.position - other.position) @ other.orientation[2]))
            where = "the same position" if along < 0.01 else f"a position {along:.2f} mm away"
            reason = (
                f"duplicate SOPInstanceUID {uid}: also in {other.path.name} (at {where}); "
                "kept that one"
            )
            skipped.append(SkippedFile(rec.path, reason, rec.series_uid))
            continue
        if uid:
            first[uid] = rec
        kept.append(rec)
    return kept, skipped


def scan_folder(path: str | os.PathLike, *, allow_lossy: bool = False) -> IngestReport:
    """Read every file under `path` (recursively) and assemble the axial CT series.

    Never stops at a bad file: non-DICOM files, DICOMDIRs, localizers, secondary
    captures, other modalities, malformed header fields, implausible pixel values,
    lossy slices (unless `allow_lossy`), duplicates and non-axial planes all end up
    in `skipped` with a reason naming the field.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    listing = list_folder(root)
    skipped = [SkippedFile(p, reason) for p, reason in listing.left_out]
    records: list[SliceRecord] = []
    for file in listing.files:
        result = read_slice(file, allow_lossy=allow_lossy)
        if isinstance(result, SkippedFile):
            skipped.append(result)
        else:
            records.append(result)
    records, duplicates = _drop_duplicate_uids(records)
    skipped.extend(duplicates)
    series, left_out = assemble(records)
    skipped.extend(left_out)
    skipped.sort(key=lambda s: str(s.path))
    return IngestReport(series=series, skipped=skipped)


def read_folder(path: str | os.PathLike, *, allow_lossy: bool = False) -> list[CTSeries]:
    """The axial CT series under `path` (see `scan_folder` for the skipped files)."""
    return scan_folder(path, allow_lossy=allow_lossy).series
