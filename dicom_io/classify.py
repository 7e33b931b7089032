"""Read one file and decide whether it is a slice of an axial CT image series.

`read_slice` never raises for a bad input file: it returns either a `SliceRecord`
(header, HU pixels, geometry) or a `SkippedFile` whose reason a person can act on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_io.geometry import axial_deviation_deg, orientation_matrix
from dicom_io.series import SkippedFile

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_CT = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
#: Largest angle between slice normal and head-feet axis still called axial.
AXIAL_TOLERANCE_DEG = 10.0
#: HU given to pixels flagged by PixelPaddingValue (outside the scanned field: air).
PADDING_HU = -1000.0
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW"}
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
}


@dataclass
class SliceRecord:
    """One accepted CT slice: header without pixels, HU image and geometry."""

    path: Path
    header: Dataset
    hu: np.ndarray
    orientation: np.ndarray
    position: np.ndarray
    pixel_spacing: tuple[float, float]
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    gantry_tilt_deg: float
    rescale_missing: bool
    padded_pixels: int
    notes: list[str] = field(default_factory=list)

    @property
    def geometry_key(self) -> tuple:
        """Slices may share a volume only if this key is equal."""
        return (
            tuple(np.round(self.orientation[:2].ravel(), 3)),
            self.hu.shape,
            tuple(round(s, 4) for s in self.pixel_spacing),
        )


def _uid(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def values(ds: Dataset, keyword: str) -> list[str]:
    """A possibly multi-valued attribute as a list of strings ([] when absent)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def _not_dicom_reason(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(512)
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return f"not DICOM: the file is {what}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c.isspace() for c in text):
        return "not DICOM: a text file"
    return "not DICOM: no 'DICM' marker and no readable DICOM header"


def _open(path: Path) -> Dataset | SkippedFile:
    """Parse the file, accepting preamble-less DICOM only if it looks like an image header."""
    if path.stat().st_size == 0:
        return SkippedFile(path, "empty file (0 bytes)")
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass
    except Exception as exc:  # any parser failure is a reason to skip, not a crash
        return SkippedFile(path, f"unreadable DICOM ({type(exc).__name__}: {exc})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
        if "SOPClassUID" in ds and "Modality" in ds:
            return ds
    except Exception:  # a forced parse of a non-DICOM file may fail in any way
        pass
    return SkippedFile(path, _not_dicom_reason(path))


def _reject_reason(ds: Dataset, sop_class: str) -> str | None:
    """Why this dataset is not a slice of an axial CT image series (None if it is)."""
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        return "DICOMDIR (media directory file), not an image"
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT":
        return f"modality {modality or '(none)'} is not CT"
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture (derived summary or screenshot), not a reconstructed CT slice"
    if sop_class in MULTIFRAME_CT:
        return f"{MULTIFRAME_CT[sop_class]} (multi-frame) is not supported"
    if sop_class and sop_class != CT_IMAGE_STORAGE:
        return f"SOP class {sop_class} is not CT Image Storage"
    image_type = [v.upper() for v in values(ds, "ImageType")]
    if set(image_type) & _LOCALIZER_TYPES:
        return "localizer/scout image (ImageType " + "\\".join(image_type) + ")"
    if "PixelData" not in ds:
        return "no pixel data"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return f"{ds.SamplesPerPixel} samples per pixel; CT needs 1"
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return f"multi-frame image ({ds.NumberOfFrames} frames) is not supported"
    missing = [
        k
        for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        if not ds.get(k)
    ]
    if missing:
        return f"missing image geometry ({', '.join(missing)})"
    return None


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray | None:
    """Pixels flagged by PixelPaddingValue (and PixelPaddingRangeLimit), or None."""
    if ds.get("PixelPaddingValue") is None:
        return None
    lo = hi = int(ds.PixelPaddingValue)
    if ds.get("PixelPaddingRangeLimit") is not None:
        lo, hi = sorted((lo, int(ds.PixelPaddingRangeLimit)))
    mask = (raw >= lo) & (raw <= hi)
    return mask if mask.any() else None


def read_slice(path: Path) -> SliceRecord | SkippedFile:
    """Read and classify one file; decode it to HU if it is an axial CT slice."""
    ds = _open(path)
    if isinstance(ds, SkippedFile):
        return ds
    meta = getattr(ds, "file_meta", Dataset())
    notes: list[str] = []
    sop_class = _uid(ds, "SOPClassUID")
    if not sop_class and _uid(meta, "MediaStorageSOPClassUID"):
        sop_class = _uid(meta, "MediaStorageSOPClassUID")
        notes.append("SOPClassUID empty; taken from the file meta")
    reason = _reject_reason(ds, sop_class)
    if reason:
        return SkippedFile(path, reason)
    orientation = orientation_matrix([float(v) for v in ds.ImageOrientationPatient])
    deviation = axial_deviation_deg(orientation)
    if deviation > AXIAL_TOLERANCE_DEG:
        return SkippedFile(
            path, f"not axial: slice normal {deviation:.0f} deg from the head-feet axis"
        )
    transfer = str(getattr(meta, "TransferSyntaxUID", "") or "unknown")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # decoder failures (truncated, unsupported) are reasons to skip
        return SkippedFile(
            path, f"pixel data unreadable (transfer syntax {transfer}): {type(exc).__name__}: {exc}"
        )
    if raw.ndim != 2:
        return SkippedFile(path, f"pixel array has shape {raw.shape}; expected one 2-D slice")
    has_slope = ds.get("RescaleSlope") is not None
    has_intercept = ds.get("RescaleIntercept") is not None
    slope = float(ds.RescaleSlope) if has_slope else 1.0
    intercept = float(ds.RescaleIntercept) if has_intercept else 0.0
    hu = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    mask = _padding_mask(ds, raw)
    if mask is not None:
        hu[mask] = PADDING_HU
    sop_uid = _uid(ds, "SOPInstanceUID") or _uid(meta, "MediaStorageSOPInstanceUID")
    if not _uid(ds, "SOPInstanceUID"):
        notes.append(
            "SOPInstanceUID empty; taken from the file meta"
            if sop_uid
            else "SOPInstanceUID missing"
        )
    instance = ds.get("InstanceNumber")
    del ds.PixelData
    spacing = [float(v) for v in ds.PixelSpacing]
    return SliceRecord(
        path=path,
        header=ds,
        hu=hu,
        orientation=orientation,
        position=np.array([float(v) for v in ds.ImagePositionPatient]),
        pixel_spacing=(spacing[0], spacing[1]),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        study_uid=_uid(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_uid(ds, "FrameOfReferenceUID"),
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class or CT_IMAGE_STORAGE,
        instance_number=int(instance) if instance not in (None, "") else None,
        gantry_tilt_deg=float(ds.get("GantryDetectorTilt") or 0.0),
        rescale_missing=not (has_slope and has_intercept),
        padded_pixels=int(mask.sum()) if mask is not None else 0,
        notes=notes,
    )
