"""ContributingEquipmentSequence: which software made or changed a derived series.

PS3.3 C.12.1 (SOP Common Module) lists each contributing device with a purpose code, its
manufacturer and model name, software versions and a free-text description; ctrobust names
itself and the reconstructor whose images the series holds, with the model file's SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

#: DICOM CID 7005 "Contributing Equipment Purposes of Reference".
PROCESSING_EQUIPMENT = ("109102", "Processing Equipment")
_LO_MAX, _ST_MAX = 64, 1024


@dataclass(frozen=True)
class Contribution:
    """One contributing device: software that computed or changed the images.

    ``serial_number`` identifies the exact instance, for a model the SHA-256 of its file
    (64 hexadecimal digits, the most a DeviceSerialNumber holds).
    """

    manufacturer: str
    model_name: str
    description: str
    software_version: str | None = None
    serial_number: str | None = None


def contributing_equipment(contributions: Sequence[Contribution]) -> DicomSequence:
    """The ContributingEquipmentSequence items for ``contributions``, in order."""
    items = []
    for c in contributions:
        if not c.manufacturer.strip() or not c.description.strip():
            raise ValueError("a contribution needs a manufacturer and a description")
        item = Dataset()
        purpose = Dataset()
        purpose.CodeValue, purpose.CodeMeaning = PROCESSING_EQUIPMENT
        purpose.CodingSchemeDesignator = "DCM"
        item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
        item.Manufacturer = c.manufacturer[:_LO_MAX]
        item.ManufacturerModelName = c.model_name[:_LO_MAX]
        if c.software_version:
            item.SoftwareVersions = c.software_version[:_LO_MAX]
        if c.serial_number:
            item.DeviceSerialNumber = c.serial_number[:_LO_MAX]
        item.ContributionDescription = c.description[:_ST_MAX]
        items.append(item)
    return DicomSequence(items)
