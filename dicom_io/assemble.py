"""Turn accepted slices into CT series: group, split by geometry, sort, check, stack.

Policies (documented in docs/dicom.md):
- grouping by SeriesInstanceUID; files without one are grouped by folder, study,
  frame of reference, series number and description, under a derived UID;
- one UID holding several geometries (orientation, matrix, pixel spacing) is split;
- slices are sorted by ImagePositionPatient projected on the slice normal;
- duplicated positions keep the first slice (InstanceNumber order), the rest are skipped;
- a slice without RescaleSlope/Intercept is skipped when the rest of its series has them;
  a series with none at all is read with slope 1, intercept 0 and a warning;
- a gantry tilt is accepted with a warning naming the angle: either the slice plane
  itself is tilted (positions along its normal) or the planes are axial and their
  positions sheared; each slice is a valid 2-D image and keeps its true position;
- irregular slice gaps are kept as they are (true positions) and reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from dicom_io.classify import PADDING_HU, SliceRecord
from dicom_io.geometry import Grid
from dicom_io.plausibility import PLAUSIBLE_HU
from dicom_io.series import CTSeries, SkippedFile
from dicom_io.uids import hashed_uid

#: Slices closer than this along the normal (mm) are duplicates.
DUPLICATE_TOL_MM = 0.01
#: A stack whose positions leave the normal by more than this angle is sheared (tilted).
SHEAR_TOL_DEG = 0.5
#: A plane tilted by more than this (deg) is reported as a gantry tilt.
TILT_REPORT_DEG = 0.5
#: Slice gaps differing by more than this fraction of the median gap are irregular.
IRREGULAR_GAP_FRACTION = 0.01


def _group_key(rec: SliceRecord) -> tuple[str, bool]:
    """(series identity, whether it was derived because the UID is missing)."""
    if rec.series_uid:
        return rec.series_uid, False
    h = rec.header
    parts = [
        str(rec.path.parent),
        rec.study_uid,
        rec.frame_of_reference_uid,
        str(h.get("SeriesNumber", "")),
        str(h.get("SeriesDescription", "")),
    ]
    return hashed_uid("ctrobust-series", *parts), True


def _split_by_geometry(records: list[SliceRecord]) -> list[list[SliceRecord]]:
    parts: dict[tuple, list[SliceRecord]] = defaultdict(list)
    for rec in records:
        parts[rec.geometry_key].append(rec)
    return sorted(parts.values(), key=len, reverse=True)


def _drop_unrescaled(
    records: list[SliceRecord],
) -> tuple[list[SliceRecord], list[SkippedFile], list[str]]:
    missing = [r for r in records if r.rescale_missing]
    if not missing:
        return records, [], []
    if len(missing) == len(records):
        return (
            records,
            [],
            [
                "RescaleSlope/RescaleIntercept absent in every slice: slope 1 and "
                "intercept 0 assumed, HU may be offset"
            ],
        )
    kept = [r for r in records if not r.rescale_missing]
    reason = (
        f"RescaleSlope/RescaleIntercept missing while the other {len(kept)} slices of its "
        "series have them: HU would be a guess"
    )
    return kept, [SkippedFile(r.path, reason, r.series_uid) for r in missing], []


def _sort_and_dedupe(
    records: list[SliceRecord], normal: np.ndarray
) -> tuple[list[SliceRecord], list[SkippedFile], list[str]]:
    def order(r: SliceRecord) -> tuple:
        inst = r.instance_number if r.instance_number is not None else 1 << 30
        return (float(np.dot(r.position, normal)), inst, str(r.path))

    ordered = sorted(records, key=order)
    kept: list[SliceRecord] = []
    skipped: list[SkippedFile] = []
    for rec in ordered:
        if kept and abs(np.dot(rec.position - kept[-1].position, normal)) < DUPLICATE_TOL_MM:
            first = kept[-1]
            pixels = "identical" if np.array_equal(rec.hu, first.hu) else "different"
            where = float(np.dot(rec.position, normal))
            reason = (
                f"duplicate slice position ({where:.2f} mm along the normal) of "
                f"{first.path.name}, {pixels} pixels; kept that one"
            )
            skipped.append(SkippedFile(rec.path, reason, rec.series_uid))
            continue
        kept.append(rec)
    warnings = (
        [f"{len(skipped)} duplicated slice position(s): kept the first of each"] if skipped else []
    )
    return kept, skipped, warnings


def _shear_deg(positions: np.ndarray, normal: np.ndarray) -> float:
    """Largest angle between the normal and the line from the first slice to another."""
    rel = positions[1:] - positions[0]
    along = rel @ normal
    across = np.linalg.norm(rel - np.outer(along, normal), axis=1)
    ok = np.abs(along) > 1e-6
    if not ok.any():
        return 0.0
    significant = across[ok] > 0.05
    angles = np.degrees(np.arctan2(across[ok], np.abs(along[ok])))
    return float(np.max(np.where(significant, angles, 0.0)))


def _tilt_warnings(records: list[SliceRecord], shear: float) -> list[str]:
    """Name a gantry tilt (tilted planes and/or a sheared stack) and what is done with it."""
    tags = sorted({round(r.gantry_tilt_deg, 2) for r in records if r.gantry_tilt_deg})
    tag_text = (
        f"GantryDetectorTilt {', '.join(f'{t:g}' for t in tags)} deg"
        if tags
        else "no GantryDetectorTilt"
    )
    plane = max(r.plane_tilt_deg for r in records)
    parts = []
    if plane > TILT_REPORT_DEG:
        parts.append(f"slice planes tilted {plane:.1f} deg from axial")
    if shear > SHEAR_TOL_DEG:
        parts.append(f"slice positions {shear:.1f} deg off the slice normal (a sheared stack)")
    if not parts:
        return [f"{tag_text} but the slices are axial and the stack is not sheared"] if tags else []
    return [
        f"gantry tilt {max(plane, shear):.1f} deg ({tag_text}): {', '.join(parts)}; each slice "
        "is reconstructed in its own plane and keeps its true position (nothing is resampled; "
        "exports keep this geometry, the NIfTI affine carries any shear)"
    ]


def _rescale(rec: SliceRecord, keyword: str, default: float) -> float:
    """The slice's RescaleSlope/Intercept as applied (classify has checked it)."""
    value = rec.header.get(keyword)
    return default if value is None or value == "" else float(value)


def _spacing_warning(positions: np.ndarray, normal: np.ndarray) -> str | None:
    gaps = np.diff(positions @ normal)
    if gaps.size < 2:
        return None
    median = float(np.median(gaps))
    if float(gaps.max() - gaps.min()) <= max(0.01, IRREGULAR_GAP_FRACTION * median):
        return None
    return (
        f"irregular slice spacing: gaps {gaps.min():.2f}..{gaps.max():.2f} mm "
        f"(median {median:.2f}); the true per-slice positions are kept"
    )


def _build(
    records: list[SliceRecord], uid: str, split_index: int, warnings: list[str]
) -> tuple[CTSeries, list[SkippedFile]]:
    records, skipped, more = _drop_unrescaled(records)
    warnings = warnings + more
    normal = records[0].orientation[2]
    records, dupes, more = _sort_and_dedupe(records, normal)
    skipped += dupes
    warnings += more
    positions = np.stack([r.position for r in records])
    warnings += _tilt_warnings(records, _shear_deg(positions, normal))
    spacing_note = _spacing_warning(positions, normal)
    if spacing_note:
        warnings.append(spacing_note)
    intercepts = sorted({_rescale(r, "RescaleIntercept", 0.0) for r in records})
    slopes = sorted({_rescale(r, "RescaleSlope", 1.0) for r in records})
    if len(intercepts) > 1 or len(slopes) > 1:
        warnings.append(
            f"rescale differs between slices (slopes {slopes}, intercepts "
            f"{intercepts}): applied per slice"
        )
    padded = sum(r.padded_pixels for r in records)
    if padded:
        warnings.append(f"{padded} pixels flagged by PixelPaddingValue set to {PADDING_HU:g} HU")
    for note, count in Counter(n for r in records for n in r.notes).items():
        warnings.append(f"{note} ({count} slice(s))")
    hu = np.stack([r.hu for r in records]).astype(np.float32, copy=False)
    high = hu > PLAUSIBLE_HU[1]
    if high.any():
        slices = int(high.any(axis=(1, 2)).sum())
        warnings.append(
            f"{int(high.sum())} pixel(s) in {slices} slice(s) above {PLAUSIBLE_HU[1]:g} HU "
            f"(max {hu.max():.0f}): kept (metal or an extended HU scale)"
        )
    if float(hu.min()) < -1024.5:
        warnings.append(
            f"values down to {hu.min():.0f} HU (below air): padding or outside "
            "the scanned field of view"
        )
    first = records[0]
    study_uid = first.study_uid
    if not study_uid:
        study_uid = hashed_uid("ctrobust-study", first.frame_of_reference_uid, uid)
        warnings.append(
            "StudyInstanceUID missing: a UID derived from the frame of reference and series is used"
        )
    grid = Grid(first.orientation, positions, first.pixel_spacing, (len(records), *first.hu.shape))
    series = CTSeries(
        hu=hu,
        grid=grid,
        series_uid=uid,
        study_uid=study_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        series_description=str(first.header.get("SeriesDescription", "") or ""),
        sop_instance_uids=[r.sop_instance_uid for r in records],
        sop_class_uid=first.sop_class_uid,
        header=first.header,
        source_paths=[Path(r.path) for r in records],
        warnings=warnings,
        split_index=split_index,
        instance_numbers=[r.instance_number for r in records],
    )
    return series, skipped


def assemble(records: list[SliceRecord]) -> tuple[list[CTSeries], list[SkippedFile]]:
    """Group accepted slices into sorted, checked CT series; return series and left-out files."""
    groups: dict[str, list[SliceRecord]] = defaultdict(list)
    derived: set[str] = set()
    for rec in records:
        key, is_derived = _group_key(rec)
        groups[key].append(rec)
        if is_derived:
            derived.add(key)
    series: list[CTSeries] = []
    skipped: list[SkippedFile] = []
    for uid, members in groups.items():
        base = []
        if uid in derived:
            base.append(
                "SeriesInstanceUID missing: slices grouped by folder, study, frame of "
                "reference, series number and description under a derived UID"
            )
        parts = _split_by_geometry(members)
        for k, part in enumerate(parts):
            notes = list(base)
            if len(parts) > 1:
                notes.append(
                    f"SeriesInstanceUID holds {len(parts)} geometries (orientation, "
                    f"matrix or pixel spacing): split, this is part {k + 1}"
                )
            built, left = _build(part, uid, k + 1 if len(parts) > 1 else 0, notes)
            skipped += [replace(f, series_uid=built.key) for f in left]
            series.append(built)
    series.sort(key=lambda s: (s.patient_id, s.study_uid, str(s.source_paths[0])))
    return series, skipped
