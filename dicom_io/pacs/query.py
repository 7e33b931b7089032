"""What a node holds: studies and their series, found by C-FIND or QIDO-RS."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dicom_io.pacs.node import Node


@dataclass
class SeriesMatch:
    """One series of a study as the node describes it."""

    series_uid: str
    modality: str
    description: str
    number: str
    instances: int | None


@dataclass
class StudyMatch:
    """One study and its series of the asked modality."""

    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    date: str
    description: str
    series: list[SeriesMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def study_filters(
    patient_id: str | None = None, study_uid: str | None = None, accession: str | None = None
) -> dict[str, str]:
    """Study-level matching keys (DICOM keywords) for the given criteria."""
    filters = {"PatientID": patient_id, "StudyInstanceUID": study_uid, "AccessionNumber": accession}
    return {key: value for key, value in filters.items() if value}


def find_studies(node: Node, filters: dict[str, str], modality: str = "CT") -> list[StudyMatch]:
    """Studies matching ``filters`` that hold a series of ``modality``, with those series."""
    if node.is_dicomweb:
        from dicom_io.pacs import dicomweb as backend
    else:
        from dicom_io.pacs import dimse as backend  # type: ignore[no-redef]
    found = []
    for study in backend.studies(node, filters):
        study.series = [s for s in backend.series(node, study.study_uid) if s.modality == modality]
        if study.series:
            found.append(study)
    return found
