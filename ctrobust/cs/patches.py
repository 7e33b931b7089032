"""CT image patches for the compressive-sensing study: the stand-in for MNIST and CelebA.

Each axial slice is resampled to ``grid`` x ``grid`` square pixels over its field of view
(:func:`ctrobust.simulation.resample_slice`), mapped from HU to [-1, 1] (-1000 HU -> -1,
+1000 HU -> +1, clipped: the project's relative-attenuation range) and cut into overlapping
``patch`` x ``patch`` patches; patches that are mostly air are dropped. Patients, not
slices, are split: the last patient (in sorted order) is the test patient, the one before
it the validation patient, all others train, so no anatomy is shared between the splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ctrobust.simulation import resample_slice
from dicom_io import scan_folder

HU_RANGE = 1000.0
AIR = -0.9
"""Pixels at or below this ([-1, 1] scale, i.e. -900 HU) count as air."""


@dataclass(frozen=True)
class PatientSlices:
    """The HU slices (k, rows, cols) of one patient with their pixel spacing (mm)."""

    patient: str
    hu: np.ndarray
    spacing_mm: tuple[float, float]


@dataclass(frozen=True)
class PatchSplits:
    """Patches (N, 1, s, s) in [-1, 1] per split and the patients each split holds."""

    train: Tensor
    val: Tensor
    test: Tensor
    patients: dict[str, list[str]]


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    """HU -> [-1, 1]: x = clip(hu, -1000, 1000) / 1000."""
    return np.clip(hu, -HU_RANGE, HU_RANGE) / HU_RANGE


def slice_patches(
    hu: np.ndarray,
    spacing_mm: tuple[float, float],
    *,
    grid: int,
    patch: int,
    stride: int,
    min_body_fraction: float,
) -> np.ndarray:
    """The kept patches of one slice, (k, patch, patch) float32 in [-1, 1], row-major order."""
    if patch > grid:
        raise ValueError(f"cs_conditioning.grid ({grid}) is smaller than the patch ({patch})")
    image = hu_to_unit(resample_slice(hu, spacing_mm, grid)[0]).astype(np.float32)
    starts = range(0, grid - patch + 1, stride)
    windows = [image[r : r + patch, c : c + patch] for r in starts for c in starts]
    kept = [w for w in windows if float(np.mean(w > AIR)) >= min_body_fraction]
    return np.stack(kept) if kept else np.zeros((0, patch, patch), np.float32)


def _patient_patches(
    patient: PatientSlices, *, grid: int, patch: int, stride: int, min_body_fraction: float
) -> np.ndarray:
    """The kept patches of all slices of one patient entry, (k, patch, patch)."""
    parts = [
        slice_patches(
            s, patient.spacing_mm, grid=grid, patch=patch, stride=stride,
            min_body_fraction=min_body_fraction,
        )
        for s in patient.hu
    ]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros((0, patch, patch), np.float32)


def _subsample(x: np.ndarray, keep: int | None, rng: np.random.Generator) -> np.ndarray:
    if keep is None or keep >= len(x):
        return x
    return x[np.sort(rng.choice(len(x), size=keep, replace=False))]


def split_patches(
    patients: Sequence[PatientSlices],
    *,
    grid: int,
    patch: int,
    stride: int,
    min_body_fraction: float,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> PatchSplits:
    """Patient-disjoint train / val / test patches (needs three patients or more)."""
    ordered = sorted(patients, key=lambda p: p.patient)
    if len({p.patient for p in ordered}) < 3:
        raise ValueError(
            f"data.folder: the study needs 3 patients or more (train, val, test), found "
            f"{len({p.patient for p in ordered})}"
        )
    ids = sorted({p.patient for p in ordered})
    roles = {ids[-1]: "test", ids[-2]: "val", **{i: "train" for i in ids[:-2]}}
    pieces: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for p in ordered:
        cut = _patient_patches(
            p, grid=grid, patch=patch, stride=stride, min_body_fraction=min_body_fraction
        )
        pieces[roles[p.patient]].append(cut)
    rng = np.random.default_rng(seed)
    joined = {k: np.concatenate(v) for k, v in pieces.items()}
    for split, x in joined.items():
        if len(x) == 0:
            raise ValueError(
                f"cs_conditioning.min_body_fraction: no {split} patch has that much body "
                f"({min_body_fraction}); lower it or check data.folder"
            )
    joined["train"] = _subsample(joined["train"], max_train, rng)
    joined["test"] = _subsample(joined["test"], max_test, rng)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v))[:, None] for k, v in joined.items()}
    patients_of = {s: [i for i in ids if roles[i] == s] for s in ("train", "val", "test")}
    return PatchSplits(**tensors, patients=patients_of)


def _evenly(count: int, wanted: int | None) -> list[int]:
    """Evenly spaced indices of ``count`` items (all when ``wanted`` is None or larger)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def patients_from_folder(
    folder: Path, *, allow_lossy: bool = False, slices_per_series: int | None = None
) -> list[PatientSlices]:
    """Every usable axial CT series of a DICOM folder as one entry, keyed by its patient
    (PatientID, else the study UID); ``slices_per_series`` evenly spaced slices of each."""
    report = scan_folder(folder, allow_lossy=allow_lossy)
    if not report.series:
        raise ValueError(f"data.folder '{folder}': no usable axial CT series")
    return [
        PatientSlices(
            patient=s.patient_id or s.study_uid,
            hu=s.hu[_evenly(len(s), slices_per_series)],
            spacing_mm=(float(s.spacing[1]), float(s.spacing[2])),
        )
        for s in report.series
    ]
