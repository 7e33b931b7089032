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

from dicom_io.fields import FieldError, floats, optional_float, optional_int, present, raw_text
from dicom_io.geometry import (
    axial_deviation_deg,
    gantry_tilt_deg,
    orientation_matrix,
    orientation_problem,
    plane_name,
)
from dicom_io.plausibility import slice_refusal
from dicom_io.pydicom_messages import captured_pydicom_messages
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
#: Transfer syntaxes that are always lossy (JPEG baseline/extended, JPEG-LS near-lossless).
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
}
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
    gantry_tilt_deg: float | None
    plane_tilt_deg: float
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


def _incomplete(ds: Dataset, size: int) -> str | None:
    """A parsed file that stops before any identifying field: a truncated header."""
    if "DirectoryRecordSequence" in ds or "SOPClassUID" in ds or "Modality" in ds:
        return None
    last = f", last element {ds[-1].tag}" if len(ds) else ""
    return (
        f"truncated DICOM header: the file ends after {size} bytes with {len(ds)} dataset "
        f"element(s){last}, before SOPClassUID and Modality"
    )


def _open(path: Path) -> Dataset | SkippedFile:
    """Parse the file, accepting preamble-less DICOM only if it looks like an image header."""
    size = path.stat().st_size
    if size == 0:
        return SkippedFile(path, "empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(path)
        reason = _incomplete(ds, size)
        return SkippedFile(path, reason) if reason else ds
    except InvalidDicomError:
        pass
    except Exception as exc:  # any parser failure is a reason to skip, not a crash
        what = "truncated DICOM header" if "file position" in str(exc) else "unreadable DICOM"
        return SkippedFile(path, f"{what} ({type(exc).__name__}: {exc}; file is {size} bytes)")
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
        return "no pixel data (PixelData absent)"
    if (optional_int(ds, "SamplesPerPixel") or 1) != 1:
        return f"SamplesPerPixel {raw_text(ds, 'SamplesPerPixel')}; CT needs 1"
    if (optional_int(ds, "NumberOfFrames") or 1) != 1:
        frames = raw_text(ds, "NumberOfFrames")
        return f"multi-frame image (NumberOfFrames {frames}) is not supported"
    missing = [
        k
        for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        if not present(ds, k)
    ]
    if missing:
        return f"missing image geometry ({', '.join(missing)})"
    return None


def _lossy(ds: Dataset, transfer: str) -> str | None:
    """What says this slice was lossy-compressed (None when nothing does)."""
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag != "01" and transfer not in LOSSY_TRANSFER_SYNTAXES:
        return None
    parts = []
    if flag == "01":
        parts.append("LossyImageCompression 01")
    ratio, method = (
        raw_text(ds, "LossyImageCompressionRatio"),
        raw_text(ds, "LossyImageCompressionMethod"),
    )
    if ratio:
        parts.append(f"ratio {ratio}")
    if method:
        parts.append(f"method {method}")
    if transfer in LOSSY_TRANSFER_SYNTAXES:
        parts.append(f"transfer syntax {LOSSY_TRANSFER_SYNTAXES[transfer]}")
    return "lossy-compressed (" + ", ".join(parts) + ")"


def _geometry(ds: Dataset) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(orientation rows, position, (dy, dx)) or a FieldError naming the bad field."""
    iop = floats(ds, "ImageOrientationPatient", 6)
    problem = orientation_problem(iop)
    if problem:
        text = raw_text(ds, "ImageOrientationPatient")
        raise FieldError("ImageOrientationPatient", f"{problem} ({text!r})")
    position = np.array(floats(ds, "ImagePositionPatient", 3))
    dy, dx = floats(ds, "PixelSpacing", 2)
    if dy <= 0 or dx <= 0:
        raise FieldError("PixelSpacing", f"is not positive ({raw_text(ds, 'PixelSpacing')!r})")
    return orientation_matrix(iop), position, (dy, dx)


def _plane_reason(orientation: np.ndarray) -> str | None:
    """Why a slice plane is not reconstructed (None for axial and gantry-tilted axial)."""
    deviation = axial_deviation_deg(orientation)
    if deviation <= AXIAL_TOLERANCE_DEG or gantry_tilt_deg(orientation) is not None:
        return None
    plane = plane_name(orientation)
    kind = f"{plane} slices" if plane != "axial" else "oblique slices (not a gantry tilt)"
    return (
        f"not axial: {kind}, slice normal {deviation:.0f} deg from the head-feet axis "
        "(ImageOrientationPatient); only axial and gantry-tilted axial CT is reconstructed"
    )


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray | None:
    """Pixels flagged by PixelPaddingValue (and PixelPaddingRangeLimit), or None."""
    value = optional_int(ds, "PixelPaddingValue")
    if value is None:
        return None
    limit = optional_int(ds, "PixelPaddingRangeLimit")
    lo, hi = (value, value) if limit is None else sorted((value, limit))
    mask = (raw >= lo) & (raw <= hi)
    return mask if mask.any() else None


def _soft_number(ds: Dataset, keyword: str, notes: list[str], read) -> float | int | None:
    """An informational number (InstanceNumber, GantryDetectorTilt): malformed is a note."""
    try:
        return read(ds, keyword)
    except FieldError as exc:
        notes.append(f"{exc}: ignored")
        return None


def _decode(path: Path, ds: Dataset, allow_lossy: bool) -> SliceRecord | SkippedFile:
    meta = getattr(ds, "file_meta", Dataset())
    notes: list[str] = []
    sop_class = _uid(ds, "SOPClassUID")
    if not sop_class and _uid(meta, "MediaStorageSOPClassUID"):
        sop_class = _uid(meta, "MediaStorageSOPClassUID")
        notes.append("SOPClassUID empty; taken from the file meta")
    reason = _reject_reason(ds, sop_class)
    if reason:
        return SkippedFile(path, reason)
    orientation, position, pixel_spacing = _geometry(ds)
    reason = _plane_reason(orientation)
    if reason:
        return SkippedFile(path, reason)
    transfer = str(getattr(meta, "TransferSyntaxUID", "") or "unknown")
    lossy = _lossy(ds, transfer)
    if lossy and not allow_lossy:
        return SkippedFile(
            path,
            f"{lossy}: refused, lossy CT can be hundreds of HU off (allow it with "
            "data.allow_lossy: true / ctrobust ingest --allow-lossy)",
        )
    if lossy:
        notes.append(f"{lossy}: kept because lossy input is allowed")
    slope = optional_float(ds, "RescaleSlope")
    intercept = optional_float(ds, "RescaleIntercept")
    if slope == 0:
        return SkippedFile(path, "RescaleSlope is 0: every pixel would be RescaleIntercept")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # decoder failures (truncated, unsupported) are reasons to skip
        return SkippedFile(
            path,
            f"pixel data unreadable (PixelData, transfer syntax {transfer}): "
            f"{type(exc).__name__}: {exc}",
        )
    if raw.ndim != 2:
        return SkippedFile(path, f"PixelData has shape {raw.shape}; expected one 2-D slice")
    rescale_missing = slope is None or intercept is None
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
        hu = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    mask = _padding_mask(ds, raw)
    if mask is not None:
        hu[mask] = PADDING_HU
    refusal = slice_refusal(
        raw,
        hu,
        optional_int(ds, "PixelRepresentation") or 0,
        slope,
        intercept,
    )
    if refusal:
        return SkippedFile(path, refusal)
    sop_uid = _uid(ds, "SOPInstanceUID") or _uid(meta, "MediaStorageSOPInstanceUID")
    if not _uid(ds, "SOPInstanceUID"):
        notes.append(
            "SOPInstanceUID empty; taken from the file meta"
            if sop_uid
            else "SOPInstanceUID missing"
        )
    instance = _soft_number(ds, "InstanceNumber", notes, optional_int)
    tag_tilt = _soft_number(ds, "GantryDetectorTilt", notes, optional_float)
    del ds.PixelData
    return SliceRecord(
        path=path,
        header=ds,
        hu=hu,
        orientation=orientation,
        position=position,
        pixel_spacing=pixel_spacing,
        series_uid=_uid(ds, "SeriesInstanceUID"),
        study_uid=_uid(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_uid(ds, "FrameOfReferenceUID"),
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class or CT_IMAGE_STORAGE,
        instance_number=instance,
        gantry_tilt_deg=tag_tilt,
        plane_tilt_deg=axial_deviation_deg(orientation),
        rescale_missing=rescale_missing,
        padded_pixels=int(mask.sum()) if mask is not None else 0,
        notes=notes,
    )


def read_slice(path: Path, *, allow_lossy: bool = False) -> SliceRecord | SkippedFile:
    """Read and classify one file; decode it to HU if it is an axial CT slice.

    Never raises for a bad file: a malformed field gives a `SkippedFile` naming it, and
    pydicom's warnings become notes of the slice (or part of the skip reason).
    """
    ds: Dataset | SkippedFile | None = None
    with captured_pydicom_messages() as messages:
        try:
            ds = _open(path)
            result = ds if isinstance(ds, SkippedFile) else _decode(path, ds, allow_lossy)
        except FieldError as exc:
            result = SkippedFile(path, f"bad header field {exc}")
        except OSError as exc:
            result = SkippedFile(path, f"cannot read file: {exc.strerror or exc}")
        except Exception as exc:  # a last resort: one bad file must never stop the scan
            result = SkippedFile(path, f"unreadable ({type(exc).__name__}: {exc})")
    if isinstance(result, SliceRecord):
        result.notes.extend(f"pydicom warned: {m}" for m in messages)
        return result
    reason = f"{result.reason} (pydicom warned: {messages[0]})" if messages else result.reason
    series = _uid(ds, "SeriesInstanceUID") if isinstance(ds, Dataset) else ""
    return SkippedFile(result.path, reason, series)
