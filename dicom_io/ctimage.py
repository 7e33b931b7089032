"""Build and save single-frame CT Image Storage datasets (shared by exports and demo data).

A series template carries every attribute common to the slices (SOP common, general
series and equipment, image plane orientation and spacing, image pixel description,
CT image module, VOI window); `slice_dataset` adds the per-slice position, number,
UID and pixels. Pixels are stored as signed int16 with RescaleSlope/Intercept.
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from dicom_io.atomic import atomic_write

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
INT16_MAX = 32767
#: Candidate RescaleSlope values, finest first (exact in decimal, short DS strings).
_SLOPES = tuple(m * 10.0**e for e in range(-4, 3) for m in (1, 2, 5))


def choose_slope(extent: float) -> float:
    """The finest 1-2-5 slope storing values up to `extent` from the intercept in int16."""
    for slope in _SLOPES:
        if extent / slope <= INT16_MAX - 1:
            return slope
    raise ValueError(f"values up to {extent:g} away from the intercept do not fit int16")


def encode(hu: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Stored int16 values with stored * slope + intercept ~= hu (rounded, not clipped)."""
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    if stored.min(initial=0) < -INT16_MAX - 1 or stored.max(initial=0) > INT16_MAX:
        raise ValueError("values do not fit int16 with this slope and intercept")
    return stored.astype(np.int16)


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8e}"


@dataclass(frozen=True)
class SeriesSpec:
    """Attributes shared by every slice of a written CT series."""

    series_uid: str
    series_number: int
    description: str
    image_type: tuple[str, ...]
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    slope: float
    intercept: float
    window: tuple[float, float]
    slice_thickness: float | None = None
    #: (explanation, center, width) presets; when given they replace ``window`` with
    #: multi-valued WindowCenter / WindowWidth / WindowCenterWidthExplanation
    windows: tuple[tuple[str, float, float], ...] = ()
    manufacturer: str = "ctrobust"
    model_name: str = "ctrobust"
    software_version: str = "0.1.0"


def dicom_now() -> tuple[str, str]:
    """(DA, TM) strings for the current local time."""
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def init_series(ds: Dataset, spec: SeriesSpec) -> None:
    """Set the series-level modules of a CT Image on `ds` (patient/study set by the caller)."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.SeriesInstanceUID = spec.series_uid
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.description
    ds.Manufacturer = spec.manufacturer
    ds.ManufacturerModelName = spec.model_name
    ds.SoftwareVersions = spec.software_version
    ds.ImageType = list(spec.image_type)
    ds.ImageOrientationPatient = [_ds(v) for v in np.asarray(spec.orientation)[:2].ravel()]
    ds.PixelSpacing = [_ds(v) for v in spec.pixel_spacing]
    ds.SliceThickness = _ds(spec.slice_thickness) if spec.slice_thickness else ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds(spec.intercept)
    ds.RescaleSlope = _ds(spec.slope)
    ds.RescaleType = "HU"
    if spec.windows:
        ds.WindowCenter = [_ds(c) for _, c, _ in spec.windows]
        ds.WindowWidth = [_ds(max(w, 1e-3)) for _, _, w in spec.windows]
        ds.WindowCenterWidthExplanation = [name for name, _, _ in spec.windows]
    else:
        ds.WindowCenter = _ds(spec.window[0])
        ds.WindowWidth = _ds(max(spec.window[1], 1e-3))
    ds.BurnedInAnnotation = "NO"
    for keyword in ("KVP", "AcquisitionNumber", "PositionReferenceIndicator", "PatientPosition"):
        if keyword not in ds:
            setattr(ds, keyword, "")


def slice_dataset(
    template: Dataset,
    hu: np.ndarray,
    position: np.ndarray,
    normal: np.ndarray,
    instance_number: int,
    sop_instance_uid: str,
) -> Dataset:
    """One slice: a copy of `template` with position, number, UID and encoded pixels."""
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(float(np.dot(position, normal)))
    stored = encode(hu, float(template.RescaleSlope), float(template.RescaleIntercept))
    ds.PixelData = stored.tobytes()
    ds.SmallestImagePixelValue = int(stored.min())
    ds.LargestImagePixelValue = int(stored.max())
    ds["SmallestImagePixelValue"].VR = "SS"
    ds["LargestImagePixelValue"].VR = "SS"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CTROBUST_010"
    ds.file_meta = meta
    return ds


def save(ds: Dataset, path: Path) -> None:
    """Write `ds` as a DICOM Part 10 file, atomically."""
    atomic_write(Path(path), lambda fh: pydicom.dcmwrite(fh, ds, enforce_file_format=True))
