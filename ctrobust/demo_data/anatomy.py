"""Synthetic, anatomy-like axial CT slices in HU, made with numpy alone.

A patient is a set of 3-D ellipsoids and cylinders in millimetres (body with
subcutaneous fat and muscle wall, spine and ribs, lungs and heart above the
diaphragm, liver, spleen, stomach, kidneys and bowel below it, aorta, a table),
small low-contrast spherical lesions, smooth tissue texture and quantum-like
noise. Slices are cut at given z positions, so neighbouring slices agree.
Patient coordinates are DICOM LPS: x to the patient's left (image right), y to
the back (image down), z to the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

AIR_HU = -1000.0
FAT_HU = -100.0
MUSCLE_HU = 50.0
LUNG_HU = -850.0
HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid (centre and semi-axes in mm) filled with `hu`."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    hu: float

    def section(self, z: float) -> tuple[float, float, float, float] | None:
        """(cx, cy, rx, ry) of the slice at height z, or None if z misses it."""
        t = 1.0 - ((z - self.centre[2]) / self.radii[2]) ** 2
        if t <= 0:
            return None
        s = float(np.sqrt(t))
        return self.centre[0], self.centre[1], self.radii[0] * s, self.radii[1] * s


@dataclass(frozen=True)
class Patient:
    """Shape parameters of one synthetic patient (mm, HU), drawn from a seed."""

    half_width: float
    half_depth: float
    fat: float
    wall: float
    diaphragm_z: float
    bone_hu: float
    marrow_hu: float
    wobble: tuple[float, float, float, float]
    organs: list[Ellipsoid] = field(default_factory=list)
    lesions: list[Ellipsoid] = field(default_factory=list)


def draw_patient(rng: np.random.Generator) -> Patient:
    """Body size, fat, bone density and organ layout for one patient."""
    a = rng.uniform(140.0, 165.0)
    b = rng.uniform(0.68, 0.78) * a
    zd = 0.0
    s = rng.uniform(0.9, 1.1)
    organs = [
        # thorax: lungs, heart, descending aorta (organs listed later are drawn on top)
        Ellipsoid((-0.42 * a, -0.02 * b, zd + 105), (0.36 * a, 0.66 * b, 125), LUNG_HU),
        Ellipsoid((0.42 * a, -0.02 * b, zd + 105), (0.34 * a, 0.64 * b, 120), LUNG_HU),
        Ellipsoid((0.12 * a, -0.22 * b, zd + 35 * s), (0.30 * a, 0.36 * b, 55 * s), 42.0),
        # abdomen
        Ellipsoid((-0.33 * a, -0.05 * b, zd - 55 * s), (0.46 * a, 0.62 * b, 75 * s), 60.0),
        Ellipsoid((0.52 * a, 0.30 * b, zd - 60 * s), (0.16 * a, 0.26 * b, 50 * s), 45.0),
        Ellipsoid((0.28 * a, -0.35 * b, zd - 55 * s), (0.22 * a, 0.22 * b, 45 * s), 25.0),
        Ellipsoid((-0.30 * a, 0.46 * b, zd - 130 * s), (0.15 * a, 0.22 * b, 55 * s), 30.0),
        Ellipsoid((0.30 * a, 0.44 * b, zd - 125 * s), (0.15 * a, 0.22 * b, 55 * s), 30.0),
    ]
    return Patient(
        half_width=a,
        half_depth=b,
        fat=rng.uniform(8.0, 25.0),
        wall=rng.uniform(8.0, 14.0),
        diaphragm_z=zd,
        bone_hu=rng.uniform(750.0, 1000.0),
        marrow_hu=rng.uniform(220.0, 320.0),
        wobble=tuple(rng.uniform(0, 2 * np.pi, 2)) + tuple(rng.uniform(0.01, 0.04, 2)),
        organs=organs,
    )


def add_lesions(
    patient: Patient, rng: np.random.Generator, z_slices: np.ndarray, count: int
) -> Patient:
    """Place `count` spherical lesions (5-15 mm, +-20..60 HU) centred on slice planes."""
    lesions = []
    hosts = [o for o in patient.organs if o.hu > 0]
    for _ in range(count * 20):
        if len(lesions) == count:
            break
        z = float(rng.choice(z_slices))
        candidates = [(o, o.section(z)) for o in hosts]
        candidates = [(o, sec) for o, sec in candidates if sec and min(sec[2:]) > 15]
        if not candidates:
            continue
        organ, (cx, cy, rx, ry) = candidates[rng.integers(len(candidates))]
        r = rng.uniform(2.5, 7.5)
        angle, frac = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5)
        contrast = rng.choice([-1.0, 1.0]) * rng.uniform(20.0, 60.0)
        centre = (cx + frac * (rx - r) * np.cos(angle), cy + frac * (ry - r) * np.sin(angle), z)
        lesions.append(Ellipsoid(centre, (r, r, r), organ.hu + contrast))
    return replace(patient, lesions=lesions)


class Canvas:
    """Pixel-centre coordinates of one patient's slices and the z-independent body masks.

    `paint` fills an ellipse inside its bounding box only, which keeps a slice with
    hundreds of small structures cheap.
    """

    def __init__(self, p: Patient, coords: np.ndarray, fov_radius: float) -> None:
        self.p = p
        self.coords = coords
        self.pixel = float(coords[1] - coords[0])
        self.fov_radius = fov_radius
        x, y = coords[None, :], coords[:, None]
        theta = np.arctan2(y / p.half_depth, x / p.half_width)
        ph1, ph2, w1, w2 = p.wobble
        scale = 1.0 + w1 * np.sin(2 * theta + ph1) + w2 * np.cos(3 * theta + ph2)
        self.skin = self._body(x, y, scale, 0.0)
        self.muscle = self._body(x, y, scale, p.fat)
        self.inner = self._body(x, y, scale, p.fat + p.wall)
        self.outside_fov = x**2 + y**2 > fov_radius**2
        self.back = 0.88 * p.half_depth
        self.texture_kernel = gaussian_kernel((coords.size, coords.size), 2.5 / self.pixel)

    def _body(self, x: np.ndarray, y: np.ndarray, scale: np.ndarray, shrink: float) -> np.ndarray:
        """Body outline (flattened at the back, slightly irregular) shrunk by `shrink` mm."""
        rx = self.p.half_width * scale - shrink
        ry = self.p.half_depth * scale - shrink
        return ((x / rx) ** 2 + (y / ry) ** 2 <= 1.0) & (y <= 0.88 * self.p.half_depth - shrink)

    def _window(self, c: float, r: float) -> slice:
        lo = np.searchsorted(self.coords, c - r)
        hi = np.searchsorted(self.coords, c + r, side="right")
        return slice(int(lo), int(hi))

    def paint(
        self,
        img: np.ndarray,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        value: float,
        within: np.ndarray | None = None,
    ) -> None:
        """Set pixels inside the ellipse (and inside `within`, if given) to `value`."""
        rows, cols = self._window(cy, ry), self._window(cx, rx)
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return
        x = self.coords[cols][None, :]
        y = self.coords[rows][:, None]
        mask = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
        if within is not None:
            mask &= within[rows, cols]
        img[rows, cols][mask] = value


def _smooth_noise(
    rng: np.random.Generator, kernel: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """White noise filtered by a Fourier-domain `kernel`, scaled to unit standard deviation."""
    white = rng.standard_normal(shape, dtype=np.float32)
    field_ = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape).astype(np.float32)
    return field_ / (field_.std() + 1e-12)


def gaussian_kernel(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Fourier transform of a Gaussian of `sigma_px` pixels on an rfft2 grid."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2)).astype(np.float32)


def _spine(c: Canvas, img: np.ndarray, lumbar: bool) -> None:
    p = c.p
    r = 19.0 if lumbar else 15.0
    vy = c.back - p.fat - r - 40.0
    # paraspinal muscles, then vertebral body (cortex + marrow), canal, posterior arch
    for side in (-1, 1):
        c.paint(img, side * 30.0, vy + r + 14.0, 24.0, 18.0, MUSCLE_HU, c.muscle)
        c.paint(img, side * (r + 14.0), vy + 8.0, 14.0, 4.5, p.bone_hu * 0.9)
        if lumbar:
            c.paint(img, side * 42.0, vy - 6.0, 15.0, 22.0, MUSCLE_HU - 5)
    c.paint(img, 0.0, vy, r, r * 0.9, p.bone_hu)
    c.paint(img, 0.0, vy, r - 2.5, r * 0.9 - 2.5, p.marrow_hu)
    c.paint(img, 0.0, vy + r + 8.0, 10.0, 12.0, p.bone_hu * 0.85)
    c.paint(img, 0.0, vy + r + 8.0, 7.0, 8.5, 15.0)
    c.paint(img, 0.0, vy + r + 26.0, 5.0, 9.0, p.bone_hu * 0.9, c.muscle)
    c.paint(img, 14.0, vy - r - 14.0, 12.0, 12.0, 45.0)
    if lumbar:
        c.paint(img, -22.0, vy - r - 12.0, 12.0, 9.0, 40.0)


def _ribs(c: Canvas, img: np.ndarray, z: float, thoracic: bool) -> None:
    p = c.p
    count = 11 if thoracic else 7
    rng = np.random.default_rng(int(abs(z) * 10) + 7)
    start, stop = (-2.6, 2.6) if thoracic else (-2.2, 0.7)
    for angle in np.linspace(start, stop, count) + rng.uniform(-0.05, 0.05, count):
        if abs(angle) < 0.35 and thoracic:
            continue
        cx = (p.half_width - p.fat - p.wall - 4.0) * np.sin(angle)
        cy = (p.half_depth - p.fat - p.wall - 4.0) * np.cos(angle + np.pi)
        c.paint(img, cx, cy, 6.0, 4.5, p.bone_hu * 0.8, c.muscle)
        c.paint(img, cx, cy, 3.5, 2.5, p.marrow_hu, c.muscle)


def _bowel(c: Canvas, img: np.ndarray, rng: np.random.Generator) -> None:
    p = c.p
    for cx, cy, r in rng.uniform([-0.4, -0.5, 9.0], [0.4, 0.1, 18.0], size=(6, 3)):
        x, y = cx * p.half_width, cy * p.half_depth
        c.paint(img, x, y, r, r * 0.8, 15.0, c.inner)
        c.paint(img, x, y - r * 0.3, r * 0.5, r * 0.35, -950.0, c.inner)


def _lung_vessels(c: Canvas, img: np.ndarray, lungs: np.ndarray, rng: np.random.Generator) -> None:
    ys, xs = np.nonzero(lungs)
    if ys.size == 0:
        return
    for i in rng.choice(ys.size, size=min(60, ys.size), replace=False):
        r = rng.uniform(0.8, 3.0)
        c.paint(img, c.coords[xs[i]], c.coords[ys[i]], r, r, 40.0, lungs)


def render_slice(c: Canvas, z: float, rng: np.random.Generator) -> np.ndarray:
    """HU image (float32) of the canvas' patient at height z."""
    p = c.p
    n = c.coords.size
    img = np.full((n, n), AIR_HU, dtype=np.float32)
    table = c.back + 12.0
    half = 0.9 * c.fov_radius
    rows = (c.coords > table) & (c.coords < table + 8.0)
    shell = (c.coords >= table + 8.0) & (c.coords < table + 11.0)
    cols = np.abs(c.coords) < half
    img[np.ix_(rows, cols)] = -350.0
    img[np.ix_(shell, cols)] = 250.0
    thoracic = z > p.diaphragm_z
    img[c.skin] = FAT_HU
    img[c.muscle] = MUSCLE_HU
    img[c.inner] = 35.0 if thoracic else -70.0
    if not thoracic:
        _bowel(c, img, rng)
    for organ in p.organs:
        sec = organ.section(z)
        if sec is not None:
            c.paint(img, *sec, organ.hu, c.inner)
    lungs = img == LUNG_HU
    _lung_vessels(c, img, lungs, rng)
    _spine(c, img, lumbar=not thoracic)
    _ribs(c, img, z, thoracic or z > p.diaphragm_z - 60)
    if thoracic:
        c.paint(img, 0.0, -(p.half_depth - p.fat - p.wall - 6.0), 14.0, 6.0, 400.0, c.muscle)
    for lesion in p.lesions:
        sec = lesion.section(z)
        if sec is not None:
            c.paint(img, *sec, lesion.hu, c.inner)
    texture = _smooth_noise(rng, c.texture_kernel, img.shape)
    soft = (img > -200) & (img < 200)
    img += texture * np.where(soft, 8.0, np.where(lungs, 25.0, 0.0)).astype(np.float32)
    img += 6.0 * rng.standard_normal(img.shape, dtype=np.float32)
    img[c.outside_fov] = HU_MIN
    return np.clip(img, HU_MIN, HU_MAX)
