"""Export a reconstruction as a derived CT series that cannot pass for a clinical original.

In the spirit of highdicom's derived objects: new Series and SOP Instance UIDs, the
source's Study and Frame of Reference UIDs (remapped consistently under
de-identification), ImageType DERIVED\\SECONDARY\\AXIAL\\<kind>, a SourceImageSequence
and ReferencedSeriesSequence per slice pointing at the source slice, and a
SeriesDescription / DerivationDescription that say what the images are (with eps for
adversarial ones). Only whitelisted patient and study attributes are copied.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from dicom_io.atomic import atomic_dir
from dicom_io.ctimage import SeriesSpec, choose_slope, dicom_now, init_series, save, slice_dataset
from dicom_io.deid import DeidConfig, Deidentifier
from dicom_io.equipment import Contribution, contributing_equipment
from dicom_io.geometry import Grid
from dicom_io.series import SourceSeries
from dicom_io.uids import hashed_uid

#: Patient / study / frame-of-reference attributes copied from the source.
COPIED_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PositionReferenceIndicator",
    "PatientPosition",
    "BodyPartExamined",
    "ContrastBolusAgent",
    "GantryDetectorTilt",  # geometry: lets readers such as dcm2niix see the tilt
)
#: Kinds whose images carry an adversarial perturbation: they must state eps.
ADVERSARIAL_PREFIXES = ("attacked", "perturbation", "adversarial")
SOFT_TISSUE_WINDOW = (40.0, 400.0)
#: The presets of a reconstruction series, as the report's windows: (explanation, center, width).
CT_WINDOW_PRESETS = (
    ("SOFT TISSUE", 40.0, 400.0),
    ("LUNG", -600.0, 1500.0),
    ("BONE", 400.0, 1800.0),
)


@dataclass(frozen=True)
class ResearchStudy:
    """The study an export joins instead of the source's, so research series never mix
    with the clinical study: its StudyInstanceUID, StudyDescription and StudyID."""

    uid: str
    description: str
    study_id: str = "CTROBUST"


_SOURCE_PURPOSE = ("121322", "Source image for image processing operation")
_LO_MAX = 64


@dataclass(frozen=True)
class WrittenSeries:
    """Where an exported series went and its identity."""

    out_dir: Path
    paths: list[Path]
    series_uid: str
    sop_instance_uids: list[str]
    grid: Grid


def is_adversarial(kind: str) -> bool:
    """True for kinds such as 'attacked_eps0.05' or 'perturbation_eps0.05'."""
    return kind.lower().startswith(ADVERSARIAL_PREFIXES)


def derived_text(kind: str, model: str, eps: float | None = None) -> tuple[str, str]:
    """Standard (SeriesDescription, DerivationDescription) for a kind of export."""
    if is_adversarial(kind) and eps is None:
        raise ValueError(f"kind {kind!r} is adversarial: eps is required")
    if kind.lower() == "ground_truth":
        return (
            f"ctrobust ground truth {model} (research)",
            f"Research reference image: {model} of the noise-free simulated sinogram of the "
            "source slice, the ground truth the reconstructions are compared with.",
        )
    if kind.lower().startswith("perturbation"):
        return (
            f"ctrobust perturbation map eps={eps:g} {model}",
            f"Perturbation map (attacked minus clean) of {model} under an adversarial "
            f"sinogram perturbation, eps={eps:g}. Research output, not an image of the "
            "patient.",
        )
    if is_adversarial(kind):
        return (
            f"ctrobust ADVERSARIAL eps={eps:g} {model} recon",
            f"ADVERSARIALLY PERTURBED research reconstruction by {model}: simulated "
            f"sinogram of the source slice plus a worst-case perturbation, eps={eps:g}. "
            "Not the patient's anatomy.",
        )
    return (
        f"ctrobust {kind} {model} recon (research)",
        f"Research reconstruction ({kind}) by {model} from a simulated sinogram of the "
        "source slice.",
    )


def _descriptions(
    kind: str, description: str, derivation: str, eps: float | None, source: SourceSeries
) -> tuple[str, str]:
    if not description.strip() or not derivation.strip():
        raise ValueError("description and derivation must say what the series is")
    core = re.sub(r"^ctrobust\s*", "", description.strip(), flags=re.IGNORECASE)
    if core.lower() == source.series_description.strip().lower():
        raise ValueError("SeriesDescription must differ from the source's (say what it is)")
    if is_adversarial(kind):
        if eps is None:
            raise ValueError(f"kind {kind!r} is adversarial: eps is required")
        tag = f"eps={eps:g}"
        description = description if tag in description else f"{description} {tag}"
        derivation = derivation if tag in derivation else f"{derivation} ({tag})"
    if not description.lower().startswith("ctrobust"):
        description = f"ctrobust {description}"
    if len(description) > _LO_MAX:
        raise ValueError(f"SeriesDescription longer than {_LO_MAX} characters: {description!r}")
    derivation = f"{derivation} Research use only, not for diagnosis."
    return description, derivation[:1024]


def _image_type_value(kind: str) -> str:
    """ImageType value 4: the kind without its eps suffix, as a CS (<= 16 characters)."""
    base = re.split(r"_eps", kind, maxsplit=1, flags=re.IGNORECASE)[0]
    return re.sub(r"[^A-Z0-9_ ]", "_", base.upper())[:16] or "CTROBUST"


def _output_grid(
    source: SourceSeries,
    indices: list[int],
    rows: int,
    cols: int,
    spacing: tuple[float, float] | None,
    origin: Sequence[float] | None,
) -> Grid:
    grid = source.grid.select(indices)
    if spacing is not None or (rows, cols) != grid.shape[1:]:
        grid = grid.resampled(rows, cols, None if spacing is None else tuple(spacing))
    if origin is not None:
        grid = grid.moved_to(origin)
    return grid


def _reference_items(
    source: SourceSeries, index: int, deid: Deidentifier | None
) -> tuple[Dataset, Dataset]:
    """(SourceImageSequence item, ReferencedSeriesSequence item) for one source slice."""

    def uid(value: str) -> str:
        return deid.uid(value) if deid else value

    image = Dataset()
    image.ReferencedSOPClassUID = source.sop_class_uid
    image.ReferencedSOPInstanceUID = uid(source.sop_instance_uids[index])
    purpose = Dataset()
    purpose.CodeValue, purpose.CodeMeaning = _SOURCE_PURPOSE
    purpose.CodingSchemeDesignator = "DCM"
    image.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.sop_class_uid
    instance.ReferencedSOPInstanceUID = image.ReferencedSOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = uid(source.series_uid)
    series.ReferencedInstanceSequence = DicomSequence([instance])
    return image, series


def _template(
    source: SourceSeries,
    spec: SeriesSpec,
    derivation: str,
    deid: Deidentifier | None,
    study: ResearchStudy | None = None,
) -> Dataset:
    ds = Dataset()
    header = source.header
    for keyword in COPIED_ATTRIBUTES:
        if keyword in header:
            ds[keyword] = copy.deepcopy(header[keyword])  # never alias the source header
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.StudyInstanceUID = source.study_uid
    if study is not None:
        ds.StudyInstanceUID, ds.StudyDescription, ds.StudyID = (
            study.uid,
            study.description[:64],
            study.study_id[:16],
        )
    ds.FrameOfReferenceUID = source.frame_of_reference_uid or hashed_uid(
        "ctrobust-for", source.series_uid
    )
    init_series(ds, spec)
    ds.DerivationDescription = derivation
    ds.ImageComments = "ctrobust research output: not for diagnosis"
    ds.LossyImageCompression = "00"
    date, time = dicom_now()
    if deid is not None:
        deid.apply(ds)
        ds.SeriesInstanceUID = spec.series_uid
        date, time = str(ds.get("StudyDate", "") or ""), str(ds.get("StudyTime", "") or "")
    else:
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    return ds


def _version() -> str:
    try:
        return importlib.metadata.version("ctrobust")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_series(
    volume_hu: np.ndarray,
    source: SourceSeries,
    out_dir: str | os.PathLike,
    kind: str,
    description: str,
    derivation: str,
    *,
    eps: float | None = None,
    slice_indices: Sequence[int] | None = None,
    spacing: tuple[float, float] | None = None,
    origin: Sequence[float] | None = None,
    deidentify: DeidConfig | Deidentifier | None = None,
    series_number: int = 9000,
    window: tuple[float, float] | None = None,
    overwrite: bool = False,
    contributions: Sequence[Contribution] = (),
    study: ResearchStudy | None = None,
) -> WrittenSeries:
    """Write `volume_hu` (z, y, x) as a derived CT series in `out_dir` (created atomically).

    Args:
        volume_hu: HU on the reconstruction grid; (y, x) for a single slice.
        source: the series the reconstruction was made from.
        out_dir: folder to create; it appears only once every slice is written.
        kind: e.g. 'clean', 'attacked_eps0.05', 'perturbation_eps0.05'; attacked and
            perturbation kinds require `eps`.
        description: SeriesDescription (prefixed 'ctrobust ', eps appended if missing).
        derivation: DerivationDescription (eps appended if missing).
        eps: perturbation budget, stated in both descriptions for adversarial kinds.
        slice_indices: source slice of each output slice (default: all, in order).
        spacing: in-plane (dy, dx) mm; default: the source field of view divided by the
            output matrix (reconstruction on N x N of the whole slice).
        origin: ImagePositionPatient of the first output voxel; default: the grid
            centred on the source field of view.
        deidentify: de-identification to apply (None: patient and study kept).
        series_number: SeriesNumber of the new series.
        window: (center, width); default the soft-tissue, lung and bone presets
            (CT_WINDOW_PRESETS, multi-valued), or symmetric about 0 for perturbations.
        overwrite: replace an existing `out_dir` (swapped in whole, never half-written).
        contributions: software that made the images, as ContributingEquipmentSequence
            (added after de-identification: it names software, not people).
        study: a research study to file the series in (None: the source's study).

    Raises:
        ValueError: shapes, descriptions or values that cannot be exported faithfully.
        FileExistsError: `out_dir` exists and `overwrite` is False.
    """
    volume = np.asarray(volume_hu)
    if not np.issubdtype(volume.dtype, np.floating):
        volume = volume.astype(np.float32)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3 or volume.size == 0:
        raise ValueError(f"need a (z, y, x) volume, got shape {volume.shape}")
    peak = max(abs(float(volume.min())), abs(float(volume.max())))
    if not np.isfinite(peak):
        raise ValueError("the volume holds NaN or infinite values")
    indices = list(range(len(source))) if slice_indices is None else [int(i) for i in slice_indices]
    if len(indices) != volume.shape[0] or not all(0 <= i < len(source) for i in indices):
        raise ValueError(
            f"{volume.shape[0]} slices but slice_indices {indices} for a {len(source)}-slice source"
        )
    description, derivation = _descriptions(kind, description, derivation, eps, source)
    deid = Deidentifier(deidentify) if isinstance(deidentify, DeidConfig) else deidentify
    grid = _output_grid(source, indices, volume.shape[1], volume.shape[2], spacing, origin)
    presets: tuple[tuple[str, float, float], ...] = ()
    if window is None and kind.lower().startswith("perturbation"):
        window = (0.0, 2 * peak)
    elif window is None:
        window, presets = SOFT_TISSUE_WINDOW, CT_WINDOW_PRESETS
    spec = SeriesSpec(
        series_uid=generate_uid(),
        series_number=series_number,
        description=description,
        image_type=("DERIVED", "SECONDARY", "AXIAL", _image_type_value(kind)),
        orientation=grid.orientation,
        pixel_spacing=grid.pixel_spacing,
        rows=volume.shape[1],
        cols=volume.shape[2],
        slope=choose_slope(peak),
        intercept=0.0,
        window=window,
        windows=presets,
        slice_thickness=float(source.header.get("SliceThickness") or 0) or None,
        software_version=_version(),
    )
    template = _template(source, spec, derivation, deid, study)
    if contributions:
        template.ContributingEquipmentSequence = contributing_equipment(contributions)
    uids = [generate_uid() for _ in indices]
    paths: list[Path] = []
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for k, (src, uid) in enumerate(zip(indices, uids, strict=True)):
            # the source's InstanceNumber, so a slice has one number in the report and viewer
            number = source.instance_numbers[src] if source.instance_numbers else None
            ds = slice_dataset(
                template,
                volume[k],
                grid.positions[k],
                grid.orientation[2],
                k + 1 if number is None else number,
                uid,
            )
            image_ref, series_ref = _reference_items(source, src, deid)
            ds.SourceImageSequence = DicomSequence([image_ref])
            ds.ReferencedSeriesSequence = DicomSequence([series_ref])
            name = f"IM{k + 1:05d}.dcm"
            save(ds, tmp / name)
            paths.append(out / name)
    return WrittenSeries(out, paths, spec.series_uid, uids, grid)
