"""Gantry tilt: read with a warning, each slice kept as the 2-D image it is, exports keep
the true tilted geometry; sagittal and coronal series are still refused, one line each.

The shared data has no tilted series, so the tests tilt the shared Philips phantom
series (S2010, Ingenuity) the three ways scanners store it: tilted slice planes with
positions along their normal, axial planes on sheared positions (GE), and tilted
planes on positions stacked along the table (shear relative to the tilted normal).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import shared_folder
from dicom_fixtures import reduced_slice
from pydicom.uid import generate_uid

from dicom_io import (
    derived_text,
    format_ingest_report,
    read_folder,
    scan_folder,
    write_nifti,
    write_series,
)
from pipelines.cli import main

pytestmark = pytest.mark.shared_data

SLICES = 8
STEP_MM = 5.0


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> list[Path]:
    """The first 8 slices of the phantom series, reduced to 128 x 128, in position order."""
    source = shared_folder("head_phantom_clinical_folder") / "S2010"
    files = sorted(
        (p for p in source.iterdir() if p.name.startswith("I")),
        key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
    )[:SLICES]
    folder = tmp_path_factory.mktemp("phantom")
    return [reduced_slice(p, folder / f"IM{k:03d}.dcm") for k, p in enumerate(files)]


def _tilted(phantom: list[Path], dst: Path, tilt_deg: float, style: str) -> Path:
    """Rewrite the phantom slices as a gantry-tilted acquisition of the given `style`."""
    t = math.radians(tilt_deg)
    row, col = np.array([1.0, 0, 0]), np.array([0, math.cos(t), math.sin(t)])
    normal = np.cross(row, col)
    dst.mkdir()
    uid = generate_uid()
    first = np.array([float(v) for v in pydicom.dcmread(phantom[0]).ImagePositionPatient])
    for k, path in enumerate(phantom):
        ds = pydicom.dcmread(path)
        if style == "tilted planes":
            position = first + k * STEP_MM * normal
        elif style == "sheared stack":
            row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
            position = first + k * STEP_MM * np.array([0, math.tan(t), 1.0])
        else:  # "tilted planes on table positions"
            position = first + k * STEP_MM * np.array([0, 0, 1.0])
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.GantryDetectorTilt = f"{tilt_deg:g}"
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(dst / path.name, enforce_file_format=True)
    return dst


STYLES = ["tilted planes", "sheared stack", "tilted planes on table positions"]


@pytest.mark.parametrize("style", STYLES)
def test_tilted_series_is_read_with_a_warning_naming_the_angle(phantom, tmp_path, style):
    [plain] = read_folder(phantom[0].parent)
    report = scan_folder(_tilted(phantom, tmp_path / "tilted", 18.5, style))
    assert report.skipped == []
    [series] = report.series
    assert len(series) == SLICES
    [warning] = [w for w in series.warnings if "gantry tilt" in w]
    assert "gantry tilt 18.5 deg (GantryDetectorTilt 18.5 deg)" in warning, warning
    # each slice is the 2-D image it was: same pixels, same order
    np.testing.assert_array_equal(series.hu, plain.hu)
    assert "gantry tilt 18.5 deg" in format_ingest_report(report)


@pytest.mark.parametrize("style", STYLES)
def test_exported_dicom_and_nifti_keep_the_tilted_geometry(phantom, tmp_path, style):
    [source] = read_folder(_tilted(phantom, tmp_path / "tilted", 16.5, style))
    recon = source.hu[:, ::2, ::2]  # a 64 x 64 "reconstruction" of every slice
    written = write_series(
        recon, source, tmp_path / "out", "clean", *derived_text("clean", "test"), overwrite=False
    )
    [back] = read_folder(written.out_dir)
    np.testing.assert_allclose(back.orientation, source.orientation, atol=1e-6)
    # same plane for every slice (position along the normal) and same field-of-view centre
    normal = source.orientation[2]
    np.testing.assert_allclose(back.positions @ normal, source.positions @ normal, atol=1e-3)

    def centres(series) -> np.ndarray:
        dy, dx = series.grid.pixel_spacing
        rows, cols = series.hu.shape[1:]
        row, col = series.orientation[0], series.orientation[1]
        return series.positions + row * dx * (cols - 1) / 2 + col * dy * (rows - 1) / 2

    np.testing.assert_allclose(centres(back), centres(source), atol=1e-3)
    assert any("gantry tilt 16.5 deg" in w for w in back.warnings)

    nifti = write_nifti(recon, source, tmp_path / "clean.nii.gz")
    image = nib.load(nifti)
    sform = image.header.get_sform(coded=True)[0]
    voxels = np.array([[0, 0, k, 1] for k in range(SLICES)]).T
    lps = (sform @ voxels)[:3].T * [-1, -1, 1]
    np.testing.assert_allclose(lps, back.positions, atol=1e-3)  # every slice where DICOM has it
    sheared = style != "tilted planes"
    assert int(image.header["qform_code"]) == (0 if sheared else 1)


def test_real_philips_tilted_series_from_dcm_qa_ct():
    """The Ingenuity series of the issue (18.5 and 16.5 deg, 54 + 58 slices), if present.

    Not in ../shared/data: set CTROBUST_DCM_QA_CT to a checkout's `In` folder
    (github.com/neurolabusc/dcm_qa_ct).
    """
    root = os.environ.get("CTROBUST_DCM_QA_CT")
    if not root or not (Path(root) / "Philips" / "S21610").is_dir():
        pytest.skip("set CTROBUST_DCM_QA_CT to dcm_qa_ct/In to test the real tilted series")
    report = scan_folder(Path(root) / "Philips" / "S21610")
    counts = sorted(
        (len(s), next(w for w in s.warnings if "gantry tilt" in w)) for s in report.series
    )
    assert [n for n, _ in counts] == [54, 58]
    assert "gantry tilt 18.5 deg (GantryDetectorTilt -18.5 deg)" in counts[0][1]
    assert "gantry tilt 16.5 deg (GantryDetectorTilt 16.5 deg)" in counts[1][1]
    assert all("gantry" not in s.reason for s in report.skipped)


def test_sagittal_and_coronal_series_are_refused_one_line_each(phantom, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    planes = {"sagittal": (0, 1, 0, 0, 0, -1), "coronal": (1, 0, 0, 0, 0, -1)}
    for plane, iop in planes.items():
        uid = generate_uid()
        for k, path in enumerate(phantom):
            ds = pydicom.dcmread(path)
            ds.ImageOrientationPatient = list(iop)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"{plane}{k}.dcm", enforce_file_format=True)
    report = scan_folder(folder)
    assert report.series == [] and len(report.skipped) == 2 * SLICES
    text = format_ingest_report(report)
    for plane in planes:
        reasons = {s.reason for s in report.skipped if s.path.name.startswith(plane)}
        assert len(reasons) == 1 and f"not axial: {plane} slices" in reasons.pop()
        assert f"not axial: {plane} slices" in text
    refused = [x for x in text.splitlines() if x.startswith("[not usable]")]
    assert len(refused) == 2 and all(f"{SLICES} skipped ({SLICES} not axial)" in x for x in refused)
    assert len(text.splitlines()) < SLICES  # a summary, not a line per file


@pytest.mark.slow
def test_a_run_on_a_tilted_series_exports_it_tilted(phantom, tmp_path, tiny_config):
    folder = _tilted(phantom, tmp_path / "tilted", 18.5, "tilted planes on table positions")
    [source] = read_folder(folder)
    out = tmp_path / "run"
    args = ["run", str(tiny_config), "--out", str(out), "--quiet", "--set", f"data.folder={folder}"]
    for item in ("instability.enabled=false", "report.enabled=false", "attack.enabled=false"):
        args += ["--set", item]
    assert main(args) == 0
    assert "gantry tilt 18.5 deg" in (out / "log.txt").read_text()
    exported = sorted(out.glob("dicom/*/plain_clean/*.dcm"))
    assert exported
    normal = source.orientation[2]
    along = {round(float(z), 3) for z in source.positions @ normal}
    for path in exported:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        np.testing.assert_allclose(iop, source.orientation[:2].ravel(), atol=1e-6)
        assert float(ds.GantryDetectorTilt) == 18.5
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        assert round(float(ipp @ normal), 3) in along
