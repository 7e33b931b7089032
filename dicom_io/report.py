"""The ingest report as JSON-able data and as text, for `ctrobust ingest FOLDER [--json]`."""

from __future__ import annotations

from typing import Any

import numpy as np

from dicom_io.series import IngestReport


def ingest_report_to_dict(report: IngestReport) -> dict[str, Any]:
    """{"series": [{uid, description, ...}], "skipped": [{"path", "reason"}]} (JSON-able)."""
    series = []
    for s in report.series:
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
                "warnings": list(s.warnings),
            }
        )
    skipped = [{"path": str(f.path), "reason": f.reason} for f in report.skipped]
    return {"series": series, "skipped": skipped}


def format_ingest_report(report: IngestReport) -> str:
    """Human-readable listing: each series with its warnings, then each skipped file."""
    data = ingest_report_to_dict(report)
    lines = [f"{len(data['series'])} CT series, {len(data['skipped'])} file(s) skipped"]
    for k, s in enumerate(data["series"], 1):
        dz, dy, dx = s["spacing"]
        lo, hi = s["hu_range"]
        lines.append(
            f"[{k}] {s['description'] or '(no description)'}  patient {s['patient_id'] or '?'}: "
            f"{s['slices']} slices {s['matrix'][0]}x{s['matrix'][1]}, "
            f"spacing {dz:.3g} x {dy:.3g} x {dx:.3g} mm, HU {lo:.0f}..{hi:.0f}"
        )
        lines.append(f"    uid {s['uid']}")
        lines.append(f"    in  {s['folder']}")
        lines.extend(f"    warning: {w}" for w in s["warnings"])
    if data["skipped"]:
        lines.append("skipped:")
        lines.extend(f"  {f['path']}: {f['reason']}" for f in data["skipped"])
    return "\n".join(lines)
