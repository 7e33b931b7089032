"""Slice-stack geometry in DICOM patient coordinates (LPS, millimetres).

One `Grid` describes where every voxel of a (z, y, x) volume sits: the in-plane
direction cosines, the pixel spacing and the ImagePositionPatient of each slice.
Readers produce it, writers consume it, and it converts to NIfTI/ITK affines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: DICOM LPS -> NIfTI RAS: flip the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Largest |cos| between row and column cosines still called perpendicular (about 0.6 deg).
ORTHOGONALITY_TOL = 0.01
#: Largest gantry tilt a CT scanner offers (deg); beyond it a tilted-looking plane is oblique.
MAX_GANTRY_TILT_DEG = 30.0
#: A gantry tilt keeps the row direction within this angle of left-right (deg).
TILT_ROW_TOL_DEG = 1.0


def orientation_matrix(image_orientation: np.ndarray | list[float]) -> np.ndarray:
    """Rows (row cosine, column cosine, normal) from ImageOrientationPatient.

    The row cosine is the direction in which the column index grows (along a row);
    the normal is row x column, the direction in which a right-handed stack grows.
    """
    iop = np.asarray(image_orientation, dtype=np.float64).reshape(2, 3)
    row = iop[0] / np.linalg.norm(iop[0])
    col = iop[1] / np.linalg.norm(iop[1])
    normal = np.cross(row, col)
    return np.stack([row, col, normal / np.linalg.norm(normal)])


def axial_deviation_deg(orientation: np.ndarray) -> float:
    """Angle in degrees between the slice normal and the patient's head-feet axis."""
    cos = min(1.0, abs(float(orientation[2][2])))
    return float(np.degrees(np.arccos(cos)))


def orientation_problem(image_orientation: list[float]) -> str | None:
    """Why six ImageOrientationPatient values cannot be two cosines (None when they can).

    Zero-length or parallel cosines give NaN geometry downstream; slightly unnormalised
    ones (rounded in the header) are fine and normalised by `orientation_matrix`.
    """
    iop = np.asarray(image_orientation, dtype=np.float64).reshape(2, 3)
    norms = np.linalg.norm(iop, axis=1)
    if norms.min() < 0.5 or norms.max() > 1.5:
        return f"has cosines of length {norms[0]:.3g} and {norms[1]:.3g}; expected 1"
    cos = abs(float(np.dot(iop[0], iop[1]) / (norms[0] * norms[1])))
    if cos > ORTHOGONALITY_TOL:
        angle = float(np.degrees(np.arccos(min(1.0, cos))))
        return f"has row and column cosines {angle:.1f} deg apart; expected 90"
    return None


def gantry_tilt_deg(orientation: np.ndarray) -> float | None:
    """How far (deg) a gantry-tilted axial slice leans, or None if it is no gantry tilt.

    A tilted gantry rotates the slice plane about the patient's left-right axis: the
    row direction stays left-right and the normal leans towards anterior-posterior.
    """
    row, normal = orientation[0], orientation[2]
    if abs(float(row[0])) < np.cos(np.radians(TILT_ROW_TOL_DEG)):
        return None
    tilt = float(np.degrees(np.arctan2(abs(normal[1]), abs(normal[2]))))
    return tilt if tilt <= MAX_GANTRY_TILT_DEG else None


def plane_name(orientation: np.ndarray) -> str:
    """'axial', 'coronal' or 'sagittal': the patient axis the slice normal is closest to."""
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(orientation[2])))]


@dataclass(frozen=True)
class Grid:
    """Voxel geometry of a (z, y, x) stack of parallel slices.

    Attributes:
        orientation: (3, 3) rows = row cosine, column cosine, slice normal (LPS).
        positions: (z, 3) ImagePositionPatient of each slice, in volume order.
        pixel_spacing: (dy, dx) mm: distance between rows, between columns.
        shape: (z, y, x) voxel counts.
    """

    orientation: np.ndarray
    positions: np.ndarray
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "orientation", np.asarray(self.orientation, dtype=np.float64))
        if positions.shape[0] != self.shape[0]:
            raise ValueError(f"{positions.shape[0]} slice positions for {self.shape[0]} slices")

    @property
    def origin(self) -> np.ndarray:
        """ImagePositionPatient of the first slice (centre of voxel (0, 0, 0))."""
        return self.positions[0]

    @property
    def slice_step(self) -> np.ndarray:
        """Mean vector from one slice position to the next (along the normal if untilted)."""
        if self.shape[0] < 2:
            return self.orientation[2] * 1.0
        return (self.positions[-1] - self.positions[0]) / (self.shape[0] - 1)

    @property
    def slice_spacing(self) -> float:
        """Mean distance between neighbouring slices along the normal (1.0 for one slice)."""
        if self.shape[0] < 2:
            return 1.0
        return float(abs(np.dot(self.slice_step, self.orientation[2])))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(dz, dy, dx) in mm."""
        return (self.slice_spacing, *self.pixel_spacing)

    def affine_lps(self) -> np.ndarray:
        """4x4 map from voxel index (i=x column, j=y row, k=z slice, 1) to LPS mm."""
        dy, dx = self.pixel_spacing
        affine = np.eye(4)
        affine[:3, 0] = self.orientation[0] * dx
        affine[:3, 1] = self.orientation[1] * dy
        affine[:3, 2] = self.slice_step
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> np.ndarray:
        """NIfTI affine (RAS mm) for an array stored as (x, y, z) = volume.transpose(2, 1, 0)."""
        return LPS_TO_RAS @ self.affine_lps()

    def select(self, indices: list[int] | np.ndarray) -> Grid:
        """The grid of a subset of slices, in the given order."""
        idx = np.asarray(indices, dtype=int)
        return Grid(
            self.orientation,
            self.positions[idx],
            self.pixel_spacing,
            (len(idx), self.shape[1], self.shape[2]),
        )

    def resampled(
        self, rows: int, cols: int, pixel_spacing: tuple[float, float] | None = None
    ) -> Grid:
        """A rows x cols matrix centred on this grid's field of view.

        Without `pixel_spacing` the pixels are square and the matrix spans the field's
        longer side: for a square field, the same field edge to edge (pixels extent / N
        wide); otherwise the shorter side is padded. This is how
        `ctrobust.simulation.resample_slice` places a slice on its N x N grid.
        """
        dy, dx = self.pixel_spacing
        if pixel_spacing is None:
            side = max(dy * self.shape[1], dx * self.shape[2]) / max(rows, cols)
            pixel_spacing = (side, side)
        new_dy, new_dx = (float(v) for v in pixel_spacing)
        row_dir, col_dir = self.orientation[0], self.orientation[1]
        shift = (
            row_dir * (dx * (self.shape[2] - 1) - new_dx * (cols - 1)) / 2
            + col_dir * (dy * (self.shape[1] - 1) - new_dy * (rows - 1)) / 2
        )
        return Grid(
            self.orientation, self.positions + shift, (new_dy, new_dx), (self.shape[0], rows, cols)
        )

    def moved_to(self, origin: np.ndarray | list[float]) -> Grid:
        """The same grid translated so that its first voxel centre is at `origin`."""
        shift = np.asarray(origin, dtype=np.float64) - self.origin
        return Grid(self.orientation, self.positions + shift, self.pixel_spacing, self.shape)
