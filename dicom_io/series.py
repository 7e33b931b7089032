"""What reading a clinical folder produces: CT series, skipped files and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from dicom_io.geometry import Grid


@dataclass(frozen=True)
class SkippedFile:
    """A file that did not become part of any series, and why (human-readable).

    `series_uid` is the SeriesInstanceUID (or derived key) of the series the file
    belonged to when it was refused during assembly, "" when it never joined one.
    """

    path: Path
    reason: str
    series_uid: str = ""


@dataclass(kw_only=True)
class SourceSeries:
    """Identity, geometry and header of a source series, without pixels.

    This is what an export needs of its source, and what a run caches at ingest so
    that exports never re-read a folder that may have changed since.

    Attributes:
        grid: voxel geometry (orientation, per-slice ImagePositionPatient, pixel spacing).
        series_uid: SeriesInstanceUID (a derived UID when the files carry none, see warnings).
        study_uid: StudyInstanceUID (likewise).
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        series_description: SeriesDescription of the source ("" when absent).
        sop_instance_uids: per-slice SOPInstanceUID, in volume order.
        sop_class_uid: SOPClassUID of the slices (CT Image Storage).
        header: header of the first slice (no pixel data); patient, study and
            acquisition fields for export are taken from here.
        source_paths: per-slice file path, in volume order.
        warnings: what was odd about the series and how it was handled.
        split_index: 0, or 1, 2, ... when one SeriesInstanceUID held several geometries.
        instance_numbers: per-slice InstanceNumber of the source (None where absent), in
            volume order; empty for records written before it was kept.
    """

    grid: Grid
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    series_description: str
    sop_instance_uids: list[str]
    sop_class_uid: str
    header: Dataset
    source_paths: list[Path]
    warnings: list[str] = field(default_factory=list)
    split_index: int = 0
    instance_numbers: list[int | None] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Unique name of the series within one scan: the UID, plus '#k' after a split."""
        return self.series_uid if self.split_index == 0 else f"{self.series_uid}#{self.split_index}"

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(dz, dy, dx) in mm; dz is the mean slice distance along the normal."""
        return self.grid.spacing

    @property
    def origin(self) -> np.ndarray:
        """ImagePositionPatient of the first slice (LPS mm)."""
        return self.grid.origin

    @property
    def orientation(self) -> np.ndarray:
        """(3, 3) rows: row cosine, column cosine, slice normal (LPS)."""
        return self.grid.orientation

    @property
    def positions(self) -> np.ndarray:
        """(z, 3) ImagePositionPatient of every slice, in volume order."""
        return self.grid.positions

    @property
    def affine(self) -> np.ndarray:
        """NIfTI affine (RAS mm) for the array `hu.transpose(2, 1, 0)`."""
        return self.grid.affine_ras()

    @property
    def patient_id(self) -> str:
        """PatientID of the source ("" when absent)."""
        return str(self.header.get("PatientID", "") or "")

    def __len__(self) -> int:
        return int(self.grid.shape[0])


@dataclass(kw_only=True)
class CTSeries(SourceSeries):
    """One axial CT image series as a Hounsfield-unit volume with its DICOM context.

    Attributes:
        hu: (z, y, x) float32 HU, slices sorted along the slice normal (ascending);
            the other attributes are those of `SourceSeries`.
    """

    hu: np.ndarray


@dataclass
class IngestReport:
    """Every series found in a folder and every file left out, with its reason."""

    series: list[CTSeries]
    skipped: list[SkippedFile]
