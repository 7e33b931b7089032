"""The ingest report as JSON-able data and as text, for `ctrobust ingest FOLDER [--json]`.

The text gives one summary line per series (slices kept, slices skipped by reason,
warnings), then the files that never joined a series grouped by reason, so that a
refused 112-slice series is one line, not 112. The JSON keeps every file and reason.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from dicom_io.series import IngestReport, SkippedFile

#: Files listed by name under one reason before the rest are only counted.
NAMES_SHOWN = 3


#: Short, countable labels of the reasons whose first words carry numbers or names.
_KINDS = (
    (r"^bad header field (\w+)", r"bad header field \1"),
    (r"^HU not finite", "HU not finite"),
    (r"^HU .* outside the plausible", "HU outside the plausible range"),
    (r"^RescaleSlope is 0", "RescaleSlope 0"),
    (r"^RescaleSlope/RescaleIntercept missing", "RescaleSlope/Intercept missing"),
    (r"^PixelRepresentation", "signedness contradicts the data"),
    (r"^Rows x Columns", "Rows x Columns contradict the pixel data"),
    (r"^SOP class", "other SOP class"),
    (r"^SamplesPerPixel", "SamplesPerPixel not 1"),
    (r"^duplicate SOPInstanceUID", "duplicate SOPInstanceUID"),
    (r"^modality", "not CT"),
)


def reason_kind(reason: str) -> str:
    """A short, countable label of a skip reason.

    "bad header field PixelSpacing has 1 value(s) ..." -> "bad header field PixelSpacing";
    otherwise the text before the first detail, e.g. "duplicate slice position".
    """
    for pattern, label in _KINDS:
        match = re.match(pattern, reason)
        if match:
            return match.expand(label)
    return re.split(r"[:(;,]", reason, maxsplit=1)[0].strip() or reason


def _series_of(skipped: list[SkippedFile]) -> dict[str, list[SkippedFile]]:
    grouped: dict[str, list[SkippedFile]] = defaultdict(list)
    for item in skipped:
        grouped[item.series_uid].append(item)
    return grouped


def _counts(files: list[SkippedFile]) -> dict[str, int]:
    return dict(Counter(reason_kind(f.reason) for f in files).most_common())


def ingest_report_to_dict(report: IngestReport) -> dict[str, Any]:
    """{"series": [...], "unusable_series": [...], "skipped": [{"path", "reason", "series"}]}.

    Each series lists `skipped_by_reason` (counts of its files left out); a series
    whose every file was refused appears in `unusable_series` with its counts and an
    example reason. JSON-able.
    """
    by_series = _series_of(report.skipped)
    series = []
    for s in report.series:
        left_out = by_series.pop(s.key, [])
        series.append(
            {
                "uid": s.key,
                "description": s.series_description,
                "patient_id": s.patient_id,
                "study_uid": s.study_uid,
                "slices": len(s),
                "matrix": [int(s.hu.shape[1]), int(s.hu.shape[2])],
                "spacing": [round(float(v), 6) for v in s.spacing],
                "hu_range": [float(np.min(s.hu)), float(np.max(s.hu))],
                "folder": str(s.source_paths[0].parent),
                "skipped_by_reason": _counts(left_out),
                "warnings": list(s.warnings),
            }
        )
    by_series.pop("", None)
    unusable = [
        {
            "uid": uid,
            "folder": str(files[0].path.parent),
            "skipped_by_reason": _counts(files),
            "example": f"{files[0].path.name}: {files[0].reason}",
        }
        for uid, files in sorted(by_series.items())
    ]
    skipped = [
        {"path": str(f.path), "reason": f.reason, "series": f.series_uid} for f in report.skipped
    ]
    return {"series": series, "unusable_series": unusable, "skipped": skipped}


def _count_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def _loose_lines(files: list[SkippedFile]) -> list[str]:
    """Files outside any series: one line per reason kind, a few names each."""
    by_kind: dict[str, list[SkippedFile]] = defaultdict(list)
    for f in files:
        by_kind[reason_kind(f.reason)].append(f)
    lines = []
    for group in by_kind.values():
        if len(group) <= NAMES_SHOWN:
            lines.extend(f"  {f.path}: {f.reason}" for f in group)
            continue
        names = ", ".join(f"{f.path.parent.name}/{f.path.name}" for f in group[:NAMES_SHOWN])
        lines.append(
            f"  {len(group)} files, e.g. {group[0].path}: {group[0].reason} "
            f"({names} and {len(group) - NAMES_SHOWN} more)"
        )
    return lines


def series_problems(report: IngestReport) -> list[str]:
    """One line per refused series and per kind of loose file: why nothing could be used."""
    data = ingest_report_to_dict(report)
    lines = [
        f"series {u['uid']} in {u['folder']}: {_count_text(u['skipped_by_reason'])} "
        f"(e.g. {u['example']})"
        for u in data["unusable_series"]
    ]
    loose = [f for f in report.skipped if not f.series_uid]
    counts = _counts(loose)
    if counts:
        lines.append(f"{len(loose)} other file(s): {_count_text(counts)}")
    return lines


def format_ingest_report(report: IngestReport) -> str:
    """Human-readable: a line per series (kept, skipped by reason, warnings), then the rest."""
    data = ingest_report_to_dict(report)
    lines = [f"{len(data['series'])} CT series, {len(data['skipped'])} file(s) skipped"]
    for k, s in enumerate(data["series"], 1):
        dz, dy, dx = s["spacing"]
        lo, hi = s["hu_range"]
        skipped = sum(s["skipped_by_reason"].values())
        lines.append(
            f"[{k}] {s['description'] or '(no description)'}  patient {s['patient_id'] or '?'}: "
            f"{s['slices']} slices kept, {skipped} skipped"
            + (f" ({_count_text(s['skipped_by_reason'])})" if skipped else "")
            + f", {len(s['warnings'])} warning(s); {s['matrix'][0]}x{s['matrix'][1]}, "
            f"spacing {dz:.3g} x {dy:.3g} x {dx:.3g} mm, HU {lo:.0f}..{hi:.0f}"
        )
        lines.append(f"    uid {s['uid']}")
        lines.append(f"    in  {s['folder']}")
        lines.extend(f"    warning: {w}" for w in s["warnings"])
        examples = {}
        for f in report.skipped:
            if f.series_uid == s["uid"]:
                examples.setdefault(reason_kind(f.reason), f)
        lines.extend(f"    skipped, e.g. {f.path}: {f.reason}" for f in examples.values())
    for u in data["unusable_series"]:
        total = sum(u["skipped_by_reason"].values())
        lines.append(
            f"[not usable] series {u['uid']} in {u['folder']}: 0 slices kept, {total} skipped "
            f"({_count_text(u['skipped_by_reason'])})"
        )
        lines.append(f"    e.g. {u['example']}")
    loose = [f for f in report.skipped if not f.series_uid]
    if loose:
        lines.append(f"skipped outside any series ({len(loose)}):")
        lines.extend(_loose_lines(loose))
    return "\n".join(lines)
