"""Clinical DICOM in and out for ctrobust.

Reading: `scan_folder` / `read_folder` turn a clinical export folder into `CTSeries`
(HU volume, geometry, UIDs) and list every file left out with its reason.
Writing: `write_series` exports a reconstruction as a derived CT series (optionally
de-identified with `DeidConfig`), `write_nifti` as NIfTI.
Networking: `dicom_io.pacs` finds, pulls and pushes studies over DIMSE and DICOMweb.
"""

from dicom_io.deid import DeidConfig, Deidentifier
from dicom_io.geometry import Grid
from dicom_io.inputs import folder_digest
from dicom_io.nifti import write_nifti
from dicom_io.read import read_folder, scan_folder
from dicom_io.record import source_from_dict, source_to_dict
from dicom_io.report import format_ingest_report, ingest_report_to_dict, series_problems
from dicom_io.series import CTSeries, IngestReport, SkippedFile, SourceSeries
from dicom_io.write import (
    CT_WINDOW_PRESETS,
    ResearchStudy,
    WrittenSeries,
    derived_text,
    is_adversarial,
    write_series,
)

__all__ = [
    "CT_WINDOW_PRESETS",
    "ResearchStudy",
    "CTSeries",
    "DeidConfig",
    "Deidentifier",
    "Grid",
    "IngestReport",
    "SkippedFile",
    "SourceSeries",
    "WrittenSeries",
    "derived_text",
    "folder_digest",
    "format_ingest_report",
    "ingest_report_to_dict",
    "is_adversarial",
    "read_folder",
    "scan_folder",
    "series_problems",
    "source_from_dict",
    "source_to_dict",
    "write_nifti",
    "write_series",
]
