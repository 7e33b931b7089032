"""Exporting reconstructions: round trip, derived-series safety, de-identification, validity."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import shared_folder

import dicom_io.ctimage
from ctrobust.demo_data import write_demo_folder
from dicom_io import (
    CT_WINDOW_PRESETS,
    DeidConfig,
    ResearchStudy,
    derived_text,
    read_folder,
    scan_folder,
    write_nifti,
    write_series,
)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("src") / "demo"
    write_demo_folder(folder, n_patients=1, n_slices=4, matrix=128)
    return folder


@pytest.fixture
def source(source_folder):
    [series] = read_folder(source_folder)
    return series


def _recon(source, n: int = 64) -> np.ndarray:
    """A stand-in reconstruction: the source block-averaged onto n x n."""
    z, rows, cols = source.hu.shape
    return source.hu.reshape(z, n, rows // n, n, cols // n).mean(axis=(2, 4))


def test_round_trip_same_hu_and_geometry(source, tmp_path):
    volume = _recon(source)
    text = derived_text("clean", "FBPConvNet")
    written = write_series(volume, source, tmp_path / "clean", "clean", *text)
    [back] = read_folder(tmp_path / "clean")
    slope = float(pydicom.dcmread(written.paths[0], stop_before_pixels=True).RescaleSlope)
    assert slope <= 0.1
    assert np.abs(back.hu - volume).max() <= slope / 2 + 1e-6
    assert back.spacing == pytest.approx((source.spacing[0], *(2 * np.array(source.spacing[1:]))))
    np.testing.assert_allclose(back.orientation, source.orientation, atol=1e-9)
    # same field of view: the first voxel centre moves half a source pixel inwards
    dx = source.spacing[2]
    expected = source.positions + 0.5 * dx * (source.orientation[0] + source.orientation[1])
    np.testing.assert_allclose(back.positions, expected, atol=1e-5)
    np.testing.assert_allclose(written.grid.positions, back.positions, atol=1e-5)


def test_simpleitk_reads_the_export_as_one_series(source, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    volume = _recon(source)
    written = write_series(volume, source, tmp_path / "out", "clean", "recon", "test recon")
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(tmp_path / "out"))
    assert list(ids) == [written.series_uid]
    files = reader.GetGDCMSeriesFileNames(str(tmp_path / "out"), ids[0])
    assert len(files) == 4
    reader.SetFileNames(files)
    image = reader.Execute()
    assert image.GetSpacing() == pytest.approx(written.grid.spacing[::-1])
    np.testing.assert_allclose(image.GetOrigin(), written.grid.origin, atol=1e-4)
    slope = float(pydicom.dcmread(written.paths[0], stop_before_pixels=True).RescaleSlope)
    assert np.abs(sitk.GetArrayFromImage(image) - volume).max() <= slope / 2 + 1e-4


def test_derived_series_cannot_pass_for_the_source(source, tmp_path):
    volume = _recon(source)
    text = derived_text("attacked", "FBPConvNet", eps=0.05)
    written = write_series(volume, source, tmp_path / "att", "attacked_eps0.05", *text, eps=0.05)
    for k, path in enumerate(written.paths):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.SeriesInstanceUID == written.series_uid != source.series_uid
        assert ds.SOPInstanceUID not in source.sop_instance_uids
        assert ds.StudyInstanceUID == source.study_uid
        assert ds.FrameOfReferenceUID == source.frame_of_reference_uid
        assert list(ds.ImageType)[:3] == ["DERIVED", "SECONDARY", "AXIAL"]
        assert "eps=0.05" in ds.SeriesDescription and "ADVERSARIAL" in ds.SeriesDescription
        assert ds.SeriesDescription != source.series_description
        assert "eps=0.05" in ds.DerivationDescription
        assert "ADVERSARIALLY PERTURBED" in ds.DerivationDescription
        assert ds.BurnedInAnnotation == "NO"
        assert ds.PatientID == source.patient_id
        [ref] = ds.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source.sop_instance_uids[k]
        [series_ref] = ds.ReferencedSeriesSequence
        assert series_ref.SeriesInstanceUID == source.series_uid
        assert ds.pixel_array.dtype == np.int16
        assert (ds.WindowCenter[0], ds.WindowWidth[0]) == (40, 400)  # soft tissue first


def test_adversarial_kinds_need_eps_and_descriptions_must_change(source, tmp_path):
    volume = _recon(source)
    with pytest.raises(ValueError, match="eps is required"):
        write_series(volume, source, tmp_path / "a", "attacked_eps0.1", "attacked", "attacked")
    with pytest.raises(ValueError, match="differ from the source"):
        write_series(
            volume, source, tmp_path / "b", "clean", f"ctrobust {source.series_description}", "same"
        )
    written = write_series(
        volume,
        source,
        tmp_path / "c",
        "perturbation_eps0.1",
        "map",
        "attacked minus clean",
        eps=0.1,
    )
    ds = pydicom.dcmread(written.paths[0])
    assert ds.SeriesDescription == "ctrobust map eps=0.1"
    assert ds.ImageType[3] == "PERTURBATION"
    assert float(ds.WindowCenter) == 0.0
    bad = volume.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_series(bad, source, tmp_path / "d", "clean", "recon", "recon")
    assert not any((tmp_path / name).exists() for name in "abd")


def test_deidentification_leaves_no_identifiers(source_folder, source, tmp_path):
    before = _hashes(source_folder)
    header = source.header
    secrets = [
        str(header.PatientName),
        str(header.PatientID),
        str(header.PatientBirthDate),
        str(header.StudyDate),
        str(header.AccessionNumber),
        source.study_uid,
        source.series_uid,
        source.frame_of_reference_uid,
        *source.sop_instance_uids,
    ]
    assert header.PatientBirthDate and header.StudyDate
    config = DeidConfig(salt="test-salt", date_shift_days=-100)
    volume = _recon(source)
    first = write_series(
        volume, source, tmp_path / "clean", "clean", "recon", "recon", deidentify=config
    )
    second = write_series(
        volume, source, tmp_path / "att", "attacked_eps1", "att", "att", eps=1.0, deidentify=config
    )
    for path in first.paths + second.paths:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, (path.name, secret)
    a = pydicom.dcmread(first.paths[0])
    b = pydicom.dcmread(second.paths[0])
    assert a.PatientIdentityRemoved == "YES" and a.DeidentificationMethod
    assert a.PatientBirthDate == ""
    assert a.PatientID.startswith("CTR") and a.PatientID == b.PatientID
    assert a.StudyInstanceUID == b.StudyInstanceUID != source.study_uid
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != source.frame_of_reference_uid
    assert (
        a.SourceImageSequence[0].ReferencedSOPInstanceUID
        == b.SourceImageSequence[0].ReferencedSOPInstanceUID
    )
    shifted = np.datetime64(
        f"{header.StudyDate[:4]}-{header.StudyDate[4:6]}-{header.StudyDate[6:]}"
    ) - np.timedelta64(100, "D")
    assert a.StudyDate == str(shifted).replace("-", "")
    assert a.PatientSex == header.PatientSex
    removed = write_series(
        volume,
        source,
        tmp_path / "nodates",
        "clean",
        "recon",
        "recon",
        deidentify=DeidConfig(salt="test-salt"),
    )
    c = pydicom.dcmread(removed.paths[0])
    assert (
        c.StudyDate == ""
        and c.ContentDate == ""
        and c.LongitudinalTemporalInformationModified == "REMOVED"
    )
    assert c.StudyInstanceUID == a.StudyInstanceUID  # same salt, same mapping
    assert _hashes(source_folder) == before
    assert str(source.header.PatientID) == secrets[1]  # the in-memory source is untouched too


def test_output_folder_is_never_half_written(source, tmp_path, monkeypatch):
    volume = _recon(source)
    out = tmp_path / "clean"
    first = write_series(volume, source, out, "clean", "recon", "recon")
    snapshot = _hashes(out)
    with pytest.raises(FileExistsError):
        write_series(volume, source, out, "clean", "recon", "recon")
    assert _hashes(out) == snapshot
    calls = {"n": 0}
    real_save = dicom_io.ctimage.save

    def failing_save(ds, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_save(ds, path)

    monkeypatch.setattr("dicom_io.write.save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_series(volume + 1, source, out, "clean", "recon", "recon", overwrite=True)
    assert _hashes(out) == snapshot
    calls["n"] = 0
    with pytest.raises(OSError, match="disk full"):
        write_series(volume, source, tmp_path / "fresh", "clean", "recon", "recon")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.setattr("dicom_io.write.save", real_save)
    second = write_series(volume + 1, source, out, "clean", "recon", "recon", overwrite=True)
    assert second.series_uid != first.series_uid
    assert [p.name for p in sorted(out.iterdir())] == [p.name for p in second.paths]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean"]


def test_nifti_affine_matches_simpleitk(source, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    volume = _recon(source)
    written = write_series(volume, source, tmp_path / "dcm", "clean", "recon", "recon")
    ours = write_nifti(volume, source, tmp_path / "ours.nii.gz")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dcm"), written.series_uid))
    sitk.WriteImage(reader.Execute(), str(tmp_path / "itk.nii.gz"))
    mine, theirs = nib.load(ours), nib.load(tmp_path / "itk.nii.gz")
    np.testing.assert_allclose(mine.affine, theirs.affine, atol=1e-4)
    assert nib.aff2axcodes(mine.affine) == ("L", "P", "S")
    np.testing.assert_allclose(mine.get_fdata(), np.asarray(theirs.get_fdata()), atol=0.06)
    np.testing.assert_array_equal(mine.get_fdata(), volume.transpose(2, 1, 0).astype(np.float32))
    assert int(mine.header["sform_code"]) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- validity against the CT Image IOD (dciodvfy from Debian's dicom3tools) -----------------

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)"
)


def _iod_errors(path: Path) -> list[str]:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False)
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


@needs_dciodvfy
def test_demo_export_passes_dciodvfy(source, source_folder, tmp_path):
    volume = _recon(source)
    plain = write_series(volume, source, tmp_path / "a", "attacked_eps0.05", "att", "att", eps=0.05)
    deid = write_series(
        volume,
        source,
        tmp_path / "b",
        "clean",
        "recon",
        "recon",
        deidentify=DeidConfig(salt="s", date_shift_days=3),
    )
    for path in [plain.paths[0], deid.paths[-1], source.source_paths[0]]:
        assert _iod_errors(path) == [], path


@needs_dciodvfy
@pytest.mark.shared_data
def test_abdomen_export_passes_dciodvfy(tmp_path):
    folder = shared_folder("abdomen_ct_pancreas")
    picks = sorted(folder.glob("*.dcm"))[:3]
    for p in picks:
        shutil.copy(p, tmp_path / p.name)
    before = _hashes(tmp_path)
    [source] = read_folder(tmp_path)
    recon = source.hu.reshape(3, 128, 4, 128, 4).mean(axis=(2, 4))
    plain = write_series(
        recon,
        source,
        tmp_path / "out" / "att",
        "attacked_eps0.05",
        *derived_text("attacked", "FBPConvNet", 0.05),
        eps=0.05,
    )
    deid = write_series(
        recon,
        source,
        tmp_path / "out" / "clean",
        "clean",
        *derived_text("clean", "FBPConvNet"),
        deidentify=DeidConfig(salt="s", date_shift_days=-7),
    )
    for path in plain.paths + deid.paths:
        assert _iod_errors(path) == [], path
    report = scan_folder(tmp_path / "out")
    assert sorted(len(s) for s in report.series) == [3, 3] and report.skipped == []
    assert _hashes(tmp_path / "out") and all(_hashes(tmp_path)[k] == v for k, v in before.items())


@needs_dciodvfy
def test_presets_research_study_and_source_instance_numbers(source, tmp_path):
    """Three window presets, a research study apart from the clinical one, the source's
    InstanceNumbers, and still no IOD error (also for the ground-truth kind)."""
    study = ResearchStudy("1.2.826.0.1.3680043.10.1234.7", "ctrobust research study of x")
    written = write_series(
        _recon(source),
        source,
        tmp_path / "gt",
        "ground_truth",
        *derived_text("ground_truth", "FBP-1000"),
        study=study,
    )
    numbers = []
    for path in written.paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert [float(v) for v in ds.WindowCenter] == [c for _, c, _ in CT_WINDOW_PRESETS]
        assert [float(v) for v in ds.WindowWidth] == [w for _, _, w in CT_WINDOW_PRESETS]
        assert list(ds.WindowCenterWidthExplanation) == [n for n, _, _ in CT_WINDOW_PRESETS]
        assert ds.StudyInstanceUID == study.uid != source.study_uid
        assert "research study" in ds.StudyDescription
        numbers.append(int(ds.InstanceNumber))
        assert _iod_errors(path) == [], path
    assert numbers == source.instance_numbers
    same = write_series(_recon(source), source, tmp_path / "c", "clean", "recon", "recon")
    assert pydicom.dcmread(same.paths[0]).StudyInstanceUID == source.study_uid
