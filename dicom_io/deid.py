"""De-identification of exported series: pseudonyms, date shifts, consistent UID remapping.

Exports copy only a whitelist of patient/study attributes from the source (no
private tags, no free-text comments, no physician names), so de-identification has
a small, known set of values to treat. UIDs and pseudonyms are hashes of the
original value with a secret salt: the same input always maps to the same output
(within a run and across runs with the same salt), and without the salt the mapping
cannot be recomputed from the original.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicom_io.uids import hashed_uid

#: Attributes that name or locate the patient, removed (type 2: emptied) on export.
DIRECT_IDENTIFIERS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "OperatorsName",
    "PerformingPhysicianName",
)
#: Kept only with `keep_patient_characteristics` (DICOM PS3.15 option 113108).
PATIENT_CHARACTERISTICS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight")
_TYPE2 = ("PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName")


@dataclass(frozen=True)
class DeidConfig:
    """How exported series are de-identified.

    Attributes:
        salt: secret mixed into every hash (set one per project; "" is guessable).
        date_shift_days: shift every date by this many days (negative: earlier);
            None removes dates, and times with them, instead.
        patient_id: fixed pseudonymous PatientID; None derives "CTR" + hash of the original.
        patient_name: fixed PatientName; None uses "PSEUDONYM^" + the pseudonymous PatientID.
        keep_patient_characteristics: keep sex, age, size and weight.
        keep_descriptions: keep StudyDescription (free text, may name people or places).
    """

    salt: str = ""
    date_shift_days: int | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    keep_patient_characteristics: bool = True
    keep_descriptions: bool = False


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _is_standard_uid(value: str) -> bool:
    """True for UIDs defined by the DICOM standard (SOP classes, transfer syntaxes, ...)."""
    return bool(UID(value).name != value)


class Deidentifier:
    """Applies a `DeidConfig` to export datasets; one instance per export run."""

    def __init__(self, config: DeidConfig) -> None:
        self.config = config
        self._uids: dict[str, str] = {}

    def uid(self, original: str) -> str:
        """Consistent replacement for an instance/series/study/frame-of-reference UID."""
        if not original or _is_standard_uid(original):
            return original
        if original not in self._uids:
            self._uids[original] = hashed_uid("ctrobust-deid", self.config.salt, original)
        return self._uids[original]

    def pseudonym(self, patient_id: str) -> str:
        """Pseudonymous PatientID ("CTR" + 12 hex digits of the salted hash)."""
        if self.config.patient_id is not None:
            return self.config.patient_id
        return "CTR" + _digest("ctrobust-pid", self.config.salt, patient_id)[:12].upper()

    def date(self, value: str) -> str:
        """A DA value shifted by the configured days, or "" when dates are removed."""
        if self.config.date_shift_days is None or not value:
            return ""
        try:
            day = _dt.datetime.strptime(value[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        return (day + _dt.timedelta(days=self.config.date_shift_days)).strftime("%Y%m%d")

    def _datetime(self, value: str) -> str:
        shifted = self.date(value[:8])
        return shifted + value[8:] if shifted else ""

    def _walk(self, ds: Dataset) -> None:
        for elem in list(ds):
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item)
            elif elem.VR == "UI" and elem.value:
                elem.value = self.uid(str(elem.value))
            elif elem.VR == "DA" and elem.value:
                elem.value = self.date(str(elem.value))
            elif elem.VR == "DT" and elem.value:
                elem.value = self._datetime(str(elem.value))
            elif elem.VR == "TM" and elem.value and self.config.date_shift_days is None:
                elem.value = ""  # a time of day without its date still dates the scan

    def apply(self, ds: Dataset) -> None:
        """De-identify `ds` in place: patient, study, dates and every non-standard UID."""
        original_id = str(ds.get("PatientID", "") or "")
        pid = self.pseudonym(original_id)
        ds.PatientID = pid
        ds.PatientName = self.config.patient_name or f"PSEUDONYM^{pid}"
        for keyword in DIRECT_IDENTIFIERS:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword in _TYPE2:
            setattr(ds, keyword, "")
        if not self.config.keep_patient_characteristics:
            for keyword in PATIENT_CHARACTERISTICS:
                if keyword in ds:
                    delattr(ds, keyword)
        if "PatientSex" not in ds or not self.config.keep_patient_characteristics:
            ds.PatientSex = ""
        if not self.config.keep_descriptions and "StudyDescription" in ds:
            ds.StudyDescription = ""
        self._walk(ds)
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = (
            "REMOVED" if self.config.date_shift_days is None else "MODIFIED"
        )
        ds.DeidentificationMethod = self.method_text()
        ds.DeidentificationMethodCodeSequence = Sequence(
            [_code(value, meaning) for value, meaning in self.method_codes()]
        )

    def method_text(self) -> str:
        """DeidentificationMethod (LO, at most 64 characters)."""
        dates = "dates removed" if self.config.date_shift_days is None else "dates shifted"
        return f"ctrobust: whitelist export, salted hash UIDs+IDs, {dates}"[:64]

    def method_codes(self) -> list[tuple[str, str]]:
        """DICOM PS3.15 profile/option codes (CID 7050) that describe what was done."""
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if not self.config.keep_descriptions:
            codes.append(("113105", "Clean Descriptors Option"))
        if self.config.date_shift_days is not None:
            codes.append(
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
            )
        if self.config.keep_patient_characteristics:
            codes.append(("113108", "Retain Patient Characteristics Option"))
        return codes


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
