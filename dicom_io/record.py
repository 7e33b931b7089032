"""A source series as JSON, without pixels: what a run caches at ingest for its exports.

An export must describe the slices that were actually ingested (their files,
positions and UIDs), not whatever the folder holds when the export runs. The ingest
stage therefore writes `source_to_dict` of every series it uses, and the export
reads it back with `source_from_dict` instead of re-scanning the folder. Only the
header attributes an export copies are kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_io.geometry import Grid
from dicom_io.series import SourceSeries
from dicom_io.write import COPIED_ATTRIBUTES

#: Header attributes kept in the record: what `write_series` reads from its source.
RECORDED_ATTRIBUTES = (*COPIED_ATTRIBUTES, "SliceThickness", "SeriesDescription")


def _header_json(header: Dataset) -> tuple[dict[str, Any], list[str]]:
    """DICOM JSON of the recorded attributes, and a note for each that cannot be stored."""
    kept = Dataset()
    notes = []
    for keyword in RECORDED_ATTRIBUTES:
        if keyword not in header:
            continue
        element = copy.deepcopy(header[keyword])
        try:
            element.to_json_dict(None, 1024)  # a malformed value fails here, not at export
        except Exception as exc:  # any conversion failure: leave this one field out
            notes.append(f"{keyword} not kept for export ({type(exc).__name__}: {exc})")
            continue
        kept[keyword] = element
    return kept.to_json_dict(), notes


def source_to_dict(series: SourceSeries) -> dict[str, Any]:
    """JSON-able record of a series' identity, geometry, per-slice files and UIDs."""
    grid = series.grid
    header, notes = _header_json(series.header)
    return {
        "key": series.key,
        "series_uid": series.series_uid,
        "split_index": series.split_index,
        "study_uid": series.study_uid,
        "frame_of_reference_uid": series.frame_of_reference_uid,
        "series_description": series.series_description,
        "sop_class_uid": series.sop_class_uid,
        "orientation": grid.orientation.tolist(),
        "pixel_spacing": list(grid.pixel_spacing),
        "shape": list(grid.shape),
        "positions": grid.positions.tolist(),
        "sop_instance_uids": list(series.sop_instance_uids),
        "instance_numbers": list(series.instance_numbers),
        "source_paths": [str(p) for p in series.source_paths],
        "warnings": [*series.warnings, *notes],
        "header": header,
    }


def source_from_dict(record: dict[str, Any]) -> SourceSeries:
    """The series `source_to_dict` described (no pixels)."""
    grid = Grid(
        np.asarray(record["orientation"], dtype=np.float64),
        np.asarray(record["positions"], dtype=np.float64),
        (float(record["pixel_spacing"][0]), float(record["pixel_spacing"][1])),
        tuple(int(v) for v in record["shape"]),
    )
    return SourceSeries(
        grid=grid,
        series_uid=record["series_uid"],
        study_uid=record["study_uid"],
        frame_of_reference_uid=record["frame_of_reference_uid"],
        series_description=record["series_description"],
        sop_instance_uids=list(record["sop_instance_uids"]),
        sop_class_uid=record["sop_class_uid"],
        header=Dataset.from_json(record["header"]),
        source_paths=[Path(p) for p in record["source_paths"]],
        warnings=list(record["warnings"]),
        split_index=int(record["split_index"]),
        instance_numbers=list(record.get("instance_numbers", [])),
    )
