"""Reading clinical folders: the shared clinical data, and a corpus of bad inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import shared_folder
from PIL import Image
from pydicom.uid import generate_uid

from ctrobust.demo_data import write_demo_folder
from dicom_io import format_ingest_report, ingest_report_to_dict, read_folder, scan_folder


def _reasons(report) -> dict[str, str]:
    return {str(s.path): s.reason for s in report.skipped}


# --- shared clinical data -------------------------------------------------------------------


@pytest.mark.shared_data
def test_phantom_folder_yields_one_series_and_lists_the_rest():
    folder = shared_folder("head_phantom_clinical_folder")
    report = scan_folder(folder)
    assert len(report.series) == 1
    series = report.series[0]
    assert len(series) == 28 and series.hu.shape == (28, 512, 512)
    assert series.series_description == "STD BRAIN 5MM"
    assert all(p.parent.name == "S2010" for p in series.source_paths)
    assert series.spacing[0] == pytest.approx(5.0)
    reasons = _reasons(report)
    assert "localizer" in reasons[str(folder / "S1000" / "I10")]
    for k in range(1, 7):
        assert "secondary capture" in reasons[str(folder / "S4010" / f"I{k}0")]
    for dirfile in ("DIRFILE", "S1000/DIRFILE", "S2010/DIRFILE", "S4010/DIRFILE"):
        assert "DICOMDIR" in reasons[str(folder / dirfile)]
    assert "not DICOM" in reasons[str(folder / "LICENSE")]
    assert len(report.skipped) == 13  # 1 localizer, 6 summaries, 4 DIRFILEs, 2 text files


@pytest.mark.shared_data
def test_jpeg2000_series_decodes_like_gdcm():
    sitk = pytest.importorskip("SimpleITK")
    folder = shared_folder("body_ct_j2k")
    [series] = read_folder(folder)
    assert len(series) == 20
    first = pydicom.dcmread(series.source_paths[0], stop_before_pixels=True)
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    reference = np.stack(
        [sitk.GetArrayFromImage(sitk.ReadImage(str(p)))[0] for p in series.source_paths]
    ).astype(np.float32)
    assert (series.hu.min(), series.hu.max()) == (reference.min(), reference.max())
    assert (series.hu.min(), series.hu.max()) == (-1024.0, 1839.0)
    np.testing.assert_array_equal(series.hu, reference)
    # The files carry no SeriesInstanceUID: the reader says so and derives one.
    assert any("SeriesInstanceUID missing" in w for w in series.warnings)
    assert series.spacing[0] == pytest.approx(2.0)


@pytest.fixture(scope="module")
def abdomen():
    return read_folder(shared_folder("abdomen_ct_pancreas"))


@pytest.mark.shared_data
def test_abdomen_reads_134_slices_in_order(abdomen):
    [series] = abdomen
    assert series.hu.shape == (134, 512, 512) and series.hu.dtype == np.float32
    along = series.positions @ series.orientation[2]
    assert np.all(np.diff(along) > 0)
    np.testing.assert_allclose(np.diff(along), 3.0, atol=1e-3)
    assert series.spacing == pytest.approx((3.0, 1.07421875, 1.07421875))
    assert (series.hu.min(), series.hu.max()) == (-1000.0, 1988.0)
    assert series.warnings == []
    header_z = [
        float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
        for p in series.source_paths[:5]
    ]
    np.testing.assert_allclose(header_z, series.positions[:5, 2])


@pytest.mark.shared_data
def test_abdomen_affine_matches_dicom_geometry(abdomen):
    [series] = abdomen
    affine = series.affine
    # voxel (0, 0, 0) is the first slice's ImagePositionPatient, in RAS (x, y negated)
    np.testing.assert_allclose(affine[:3, 3], series.origin * [-1, -1, 1])
    far = affine @ [511, 511, 133, 1]
    last = series.positions[-1] + 511 * 1.07421875 * (series.orientation[0] + series.orientation[1])
    np.testing.assert_allclose(far[:3], last * [-1, -1, 1], atol=1e-6)


# --- a corpus of bad inputs mixed with good slices ------------------------------------------


def _rewrite(src: Path, dst: Path, change) -> Path:
    ds = pydicom.dcmread(src)
    change(ds)
    if "SOPInstanceUID" in ds:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.fixture
def good(tmp_path: Path) -> list[Path]:
    """Six good 64 x 64 slices of one synthetic series (5 mm apart)."""
    write_demo_folder(tmp_path / "demo", n_patients=1, n_slices=6, matrix=64)
    return sorted((tmp_path / "demo" / "patient01").glob("IM*.dcm"))


def test_bad_files_are_skipped_with_reasons_and_good_slices_read(good, tmp_path):
    folder = good[0].parent
    data = good[0].read_bytes()
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (folder / "random.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    (folder / "picture.dcm").write_bytes(png.getvalue())

    def to_mr(ds):
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.SeriesInstanceUID = generate_uid()

    _rewrite(good[0], folder / "mr.dcm", to_mr)
    _rewrite(good[1], folder / "nopixels.dcm", lambda ds: delattr(ds, "PixelData"))
    _rewrite(good[2], good[2], lambda ds: delattr(ds, "RescaleIntercept"))
    duplicate = _rewrite(good[3], folder / "zz_duplicate.dcm", lambda ds: None)

    report = scan_folder(folder.parent)
    reasons = _reasons(report)
    expected = {
        "empty.dcm": "empty file",
        "truncated.dcm": "pixel data unreadable",
        "random.dcm": "not DICOM",
        "picture.dcm": "PNG image",
        "mr.dcm": "modality MR is not CT",
        "nopixels.dcm": "no pixel data",
        good[2].name: "RescaleIntercept missing",
        duplicate.name: "duplicate slice position",
    }
    for name, fragment in expected.items():
        assert fragment in reasons[str(folder / name)], (name, reasons.get(str(folder / name)))
    assert len(report.skipped) == len(expected)
    [series] = report.series
    assert [p.name for p in series.source_paths] == [good[i].name for i in (0, 1, 3, 4, 5)]
    assert any("duplicated" in w for w in series.warnings)
    assert any("irregular slice spacing" in w for w in series.warnings)  # the gap at slice 3
    reference = read_folder(good[0])[0].hu[0]
    np.testing.assert_array_equal(series.hu[0], reference)


def test_series_without_any_rescale_reads_as_raw_with_a_warning(good):
    stored = pydicom.dcmread(good[0]).pixel_array
    for path in good:
        _rewrite(
            path, path, lambda ds: (delattr(ds, "RescaleIntercept"), delattr(ds, "RescaleSlope"))
        )
    [series] = read_folder(good[0].parent)
    assert len(series) == 6
    assert any("slope 1 and intercept 0 assumed" in w for w in series.warnings)
    np.testing.assert_array_equal(series.hu[0], stored.astype(np.float32))


def test_rescale_is_applied_per_slice(good):
    before = read_folder(good[0].parent)[0].hu

    def shift(ds):
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 24).tobytes()
        ds.RescaleIntercept = -1048
        ds.RescaleSlope = 1

    _rewrite(good[2], good[2], shift)
    [series] = read_folder(good[0].parent)
    np.testing.assert_array_equal(series.hu, before)
    assert any("rescale differs between slices" in w for w in series.warnings)


def test_pixel_padding_value_becomes_air(good):
    def pad(ds):
        pixels = ds.pixel_array.astype(np.int16)
        pixels[:4, :] = -2000
        ds.PixelData = pixels.tobytes()
        ds.PixelPaddingValue = -2000
        ds["PixelPaddingValue"].VR = "SS"

    for path in good:
        _rewrite(path, path, pad)
    [series] = read_folder(good[0].parent)
    assert np.all(series.hu[:, :4, :] == -1000.0)
    assert series.hu.min() >= -1024.0
    assert any("PixelPaddingValue" in w for w in series.warnings)


def test_gantry_tilted_sheared_stack_is_read_with_a_warning(good):
    tilt = np.tan(np.radians(15.0))

    for k, path in enumerate(good):

        def shear(ds, k=k):
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y + tilt * 5.0 * k, z]
            ds.GantryDetectorTilt = 15

        _rewrite(path, path, shear)
    report = scan_folder(good[0].parent)
    assert report.skipped == []
    [series] = report.series
    assert len(series) == 6
    [warning] = [w for w in series.warnings if "gantry tilt" in w]
    assert "gantry tilt 15.0 deg (GantryDetectorTilt 15 deg)" in warning
    # the true (sheared) positions are kept, nothing resampled
    np.testing.assert_allclose(np.diff(series.positions[:, 1]), tilt * 5.0, atol=1e-6)


def test_one_uid_with_two_matrices_is_split(good, tmp_path):
    other = tmp_path / "other"
    write_demo_folder(other, n_patients=1, n_slices=3, matrix=32)
    uid = pydicom.dcmread(good[0], stop_before_pixels=True).SeriesInstanceUID
    for path in sorted((other / "patient01").glob("IM*.dcm")):
        _rewrite(
            path,
            good[0].parent / f"small_{path.name}",
            lambda ds: setattr(ds, "SeriesInstanceUID", uid),
        )
    series = read_folder(good[0].parent)
    assert sorted(s.hu.shape for s in series) == [(3, 32, 32), (6, 64, 64)]
    assert {s.key for s in series} == {f"{uid}#1", f"{uid}#2"}
    assert all(any("split" in w for w in s.warnings) for s in series)


def test_report_is_json_and_text(good):
    (good[0].parent / "notes.txt").write_text("hello\n")
    (good[0].parent / ".IM.partial").mkdir()
    (good[0].parent / ".IM.partial" / "IM00001.dcm").write_bytes(good[0].read_bytes())
    report = scan_folder(good[0].parent.parent)
    data = json.loads(json.dumps(ingest_report_to_dict(report)))
    [entry] = data["series"]
    assert entry["slices"] == 6 and entry["matrix"] == [64, 64]
    assert entry["spacing"][0] == pytest.approx(5.0)
    assert entry["hu_range"][0] < -900 and entry["hu_range"][1] > 300
    assert data["skipped"] == [
        {
            "path": str(good[0].parent / ".IM.partial"),
            "reason": "hidden folder, not scanned",
            "series": "",
        },
        {
            "path": str(good[0].parent / "notes.txt"),
            "reason": "not DICOM: a text file",
            "series": "",
        },
    ]
    text = format_ingest_report(report)
    assert "1 CT series, 2 file(s) skipped" in text and "notes.txt: not DICOM" in text


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "nope")
