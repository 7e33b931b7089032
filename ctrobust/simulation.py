"""From HU slices to the training/test tensors of the CT experiment (Raj et al. 4.4).

Each selected slice is resampled to an n x n grid covering the slice's field of
view, turned into relative attenuation x = mu/mu_water, and projected:
- ground truth  x_gt = R_gt(A_gt x)  with the FBP of ``gt_views`` noise-free views,
- measurement   y = A x (+ Poisson noise with I0 photons per detector pixel),
- network input R y, the FBP of the measured views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.units import MU_WATER_PER_MM, add_poisson_noise, hu_to_relative


@dataclass(frozen=True)
class SliceSource:
    """One axial HU slice and where it came from."""

    hu: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    series_key: str
    patient_key: str
    slice_index: int
    instance_number: int | None = None
    z_mm: float | None = None
    series_description: str = ""


@dataclass
class SimulatedSlices:
    """Stacked tensors for a set of slices; ``meta`` rows align with the batch axis.

    ``x_true`` is the source image the simulation started from, ``x_gt`` the FBP ground
    truth, ``y_clean`` = A x_true the noise-free measurement (Raj eq. 7's nominal point),
    ``y`` the measured sinogram with the low-dose noise, ``fbp`` = R y the network input.
    """

    x_true: torch.Tensor
    x_gt: torch.Tensor
    y: torch.Tensor
    y_clean: torch.Tensor
    fbp: torch.Tensor
    pixel_mm: torch.Tensor
    meta: list[dict[str, object]] = field(default_factory=list)

    def subset(self, index: Sequence[int]) -> SimulatedSlices:
        """The slices at ``index``, in that order."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return SimulatedSlices(
            x_true=self.x_true[idx],
            x_gt=self.x_gt[idx],
            y=self.y[idx],
            y_clean=self.y_clean[idx],
            fbp=self.fbp[idx],
            pixel_mm=self.pixel_mm[idx],
            meta=[self.meta[i] for i in idx.tolist()],
        )

    def __len__(self) -> int:
        return self.x_true.shape[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "x_true": self.x_true,
            "x_gt": self.x_gt,
            "y": self.y,
            "y_clean": self.y_clean,
            "fbp": self.fbp,
            "pixel_mm": self.pixel_mm,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, state: dict[str, object]) -> SimulatedSlices:
        return cls(**state)  # type: ignore[arg-type]


def resample_slice(
    hu: np.ndarray, spacing_mm: tuple[float, float], n: int
) -> tuple[np.ndarray, float]:
    """Resample a (rows, cols) HU slice onto n x n square pixels over its field of view.

    The shorter side is padded with air so nothing is cut; HU below -1000 (air
    outside the scan field, padding values) is clipped to -1000. Returns the
    image and its pixel size in mm.
    """
    rows, cols = hu.shape
    dy, dx = spacing_mm
    fov = max(rows * dy, cols * dx)
    target_rows = max(1, round(rows * dy / fov * n))
    target_cols = max(1, round(cols * dx / fov * n))
    image = torch.from_numpy(np.clip(hu, -1000.0, None).astype(np.float32))[None, None]
    image = F.interpolate(image, size=(target_rows, target_cols), mode="bilinear", antialias=True)
    out = torch.full((n, n), -1000.0)
    top, left = (n - target_rows) // 2, (n - target_cols) // 2
    out[top : top + target_rows, left : left + target_cols] = image[0, 0]
    return out.numpy(), fov / n


def simulate(
    sources: Sequence[SliceSource],
    op: ParallelBeam2D,
    op_gt: ParallelBeam2D,
    *,
    i0: float | None = None,
    mu_water_per_mm: float = MU_WATER_PER_MM,
    seed: int = 0,
    chunk: int = 16,
    progress: Callable[[int], None] | None = None,
) -> SimulatedSlices:
    """Simulate ground truth (``op_gt``), measured sinogram and FBP input (``op``) per slice.

    Both operators share n and the detector; the ground truth is computed once without
    gradients, so ``op_gt`` may be ASTRA slice by slice (no large system matrix to build).
    """
    if (op.n, op.n_det) != (op_gt.n, op_gt.n_det):
        raise ValueError("the measurement and ground-truth operators need the same n and n_det")
    n, device = op.n, op.device
    generator = torch.Generator(device=device).manual_seed(seed)
    keys = ("x_true", "x_gt", "y", "y_clean", "fbp", "px")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, len(sources), chunk):
        batch = sources[start : start + chunk]
        resampled = [resample_slice(s.hu, s.pixel_spacing_mm, n) for s in batch]
        x = torch.from_numpy(np.stack([hu_to_relative(img) for img, _ in resampled]))[:, None]
        x = x.to(device=device, dtype=torch.float32)
        pixel_mm = torch.tensor([px for _, px in resampled], dtype=torch.float32, device=device)
        with torch.no_grad():
            y = y_clean = op.A(x)
            if i0 is not None:
                y = torch.cat(
                    [
                        add_poisson_noise(
                            y_clean[i : i + 1], i0, float(px), generator, mu_water_per_mm
                        )
                        for i, px in enumerate(pixel_mm)
                    ]
                )
            parts["x_true"].append(x.cpu())
            parts["x_gt"].append(op_gt.fbp(op_gt.A(x)).cpu())
            parts["y"].append(y.cpu())
            parts["y_clean"].append(y_clean.cpu())
            parts["fbp"].append(op.fbp(y).cpu())
            parts["px"].append(pixel_mm.cpu())
        if progress is not None:
            progress(len(batch))
    meta = [
        {
            "series": s.series_key,
            "patient": s.patient_key,
            "slice": s.slice_index,
            "instance": s.instance_number,
            "z": s.z_mm,
            "description": s.series_description,
        }
        for s in sources
    ]
    return SimulatedSlices(
        x_true=torch.cat(parts["x_true"]),
        x_gt=torch.cat(parts["x_gt"]),
        y=torch.cat(parts["y"]),
        y_clean=torch.cat(parts["y_clean"]),
        fbp=torch.cat(parts["fbp"]),
        pixel_mm=torch.cat(parts["px"]),
        meta=meta,
    )


def _held_out_count(fraction: float, available: int, keep: int) -> int:
    """Round ``fraction * available``, at least 1 when the fraction is positive, leaving
    ``keep`` behind."""
    if fraction <= 0:
        return 0
    return min(available - keep, max(1, round(fraction * available)))


def split_indices(
    meta: Sequence[dict[str, object]], test_fraction: float, val_fraction: float
) -> dict[str, list[int]]:
    """Train/val/test split by patient when there are several, else by slice blocks.

    With >= 2 patients the last patients (sorted by key) are held out for test, so a test
    slice never shares a patient with a training slice. With >= 3 patients validation is
    patient-disjoint too: the last ``val_fraction`` of the remaining patients (at least one
    when ``val_fraction > 0``, never all), so the validation score that
    guides training measures generalisation to new patients, as the test does. With two
    patients validation is the last slices of the training patient, and with one patient the
    whole split is by contiguous blocks along z (test last): honest about being the same
    patient, and what :func:`patients_in_several_splits` reports.
    """
    patients = sorted({str(m["patient"]) for m in meta})
    if len(patients) >= 2:
        n_test = _held_out_count(test_fraction, len(patients), keep=1)
        test_patients = set(patients[-n_test:])
        rest_patients = patients[:-n_test]
        test = [i for i, m in enumerate(meta) if str(m["patient"]) in test_patients]
        rest = [i for i, m in enumerate(meta) if str(m["patient"]) not in test_patients]
        if len(rest_patients) >= 2:
            n_val = _held_out_count(val_fraction, len(rest_patients), keep=1)
            val_patients = set(rest_patients[len(rest_patients) - n_val :])
            val = [i for i in rest if str(meta[i]["patient"]) in val_patients]
            train = [i for i in rest if str(meta[i]["patient"]) not in val_patients]
            if not train:
                raise ValueError("the split leaves no training slices: lower data.test_fraction")
            return {"train": train, "val": val, "test": test}
    else:
        n_test = max(1, math.ceil(test_fraction * len(meta)))
        rest, test = list(range(len(meta) - n_test)), list(range(len(meta) - n_test, len(meta)))
    n_val = round(val_fraction * len(rest))
    val = rest[len(rest) - n_val :] if n_val else []
    train = rest[: len(rest) - n_val]
    if not train:
        raise ValueError("the split leaves no training slices: lower data.test_fraction")
    return {"train": train, "val": val, "test": test}


def patients_in_several_splits(
    split: dict[str, Sequence[int]], meta: Sequence[dict[str, object]]
) -> dict[str, list[str]]:
    """Patients whose slices lie in more than one split, each with the splits it is in.

    Empty exactly when the split is patient-disjoint; a report states that from this, not
    from a fixed sentence.
    """
    where: dict[str, set[str]] = {}
    for name, indices in split.items():
        for i in indices:
            where.setdefault(str(meta[i]["patient"]), set()).add(name)
    return {p: sorted(names) for p, names in sorted(where.items()) if len(names) > 1}
