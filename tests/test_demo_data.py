"""The embedded synthetic clinical folder: readable, anatomical, reproducible, fast."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ctrobust.demo_data import write_demo_folder
from ctrobust.demo_data.anatomy import add_lesions, draw_patient
from dicom_io import scan_folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "clinic"
    written = write_demo_folder(root)
    return written, scan_folder(root)


def test_default_folder_reads_back_as_three_patients(demo):
    written, report = demo
    assert report.skipped == []
    assert len(report.series) == 3
    assert len({s.patient_id for s in report.series}) == 3
    assert len({s.study_uid for s in report.series}) == 3
    assert [p.split for p in written.patients] == ["train", "train", "test"]
    assert [p.patient_id for p in written.patients] == [s.patient_id for s in report.series]
    for s in report.series:
        assert s.hu.shape == (12, 512, 512)
        assert 2.5 <= s.spacing[0] <= 5.0
        assert 0.7 <= s.spacing[1] == s.spacing[2] <= 0.9
        assert s.warnings == []
        assert s.hu.min() <= -1000 and s.hu.max() > 300


def test_tissues_have_plausible_hu(demo):
    _, report = demo
    chest, abdomen, junction = report.series
    for s in report.series:
        assert np.all(s.hu[:, :5, :5] == -1024.0)  # corner: outside the reconstruction circle
        air = s.hu[:, 20:40, 240:272]  # in front of the patient, inside the circle
        assert abs(float(np.median(air)) + 1000) < 5
        assert np.mean(s.hu > 300) > 0.001  # spine and ribs
        fat = np.mean((s.hu > -130) & (s.hu < -70))
        assert fat > 0.01
    lung = np.mean((chest.hu > -900) & (chest.hu < -800))
    assert lung > 0.05
    assert np.mean((abdomen.hu > -900) & (abdomen.hu < -800)) < lung / 10
    liver = (abdomen.hu > 45) & (abdomen.hu < 75)
    assert liver.mean() > 0.03
    assert np.mean((junction.hu > -900) & (junction.hu < -800)) > 0.005  # lung bases


def test_headers_say_synthetic(demo):
    written, _ = demo
    for k, patient in enumerate(written.patients, 1):
        ds = pydicom.dcmread(sorted(patient.folder.glob("*.dcm"))[0])
        assert str(ds.PatientName) == f"CTROBUST^SYNTHETIC{k:02d}"
        assert ds.InstitutionName == "ctrobust synthetic phantom"
        assert "SYNTHETIC" in ds.ImageComments
        assert ds.SeriesInstanceUID == patient.series_uid
        assert ds.RescaleIntercept == -1024 and ds.pixel_array.dtype == np.int16


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.dcm")):
            h.update(p.read_bytes())
        return h.hexdigest()

    kwargs = {"n_patients": 2, "n_slices": 2, "matrix": 64}
    a = digest(write_demo_folder(tmp_path / "a", seed=3, **kwargs).root)
    b = digest(write_demo_folder(tmp_path / "b", seed=3, **kwargs).root)
    c = digest(write_demo_folder(tmp_path / "c", seed=4, **kwargs).root)
    assert a == b != c


def test_lesions_are_small_low_contrast_and_on_slices():
    rng = np.random.default_rng(0)
    z = np.arange(-25.0, 10.0, 3.0)
    patient = add_lesions(draw_patient(rng), rng, z, 4)
    assert len(patient.lesions) == 4
    hosts = {o.hu for o in patient.organs}
    for lesion in patient.lesions:
        assert 5.0 <= 2 * lesion.radii[0] <= 15.0
        assert lesion.centre[2] in z
        assert any(20.0 <= abs(lesion.hu - h) <= 60.0 for h in hosts)


def test_junk_files_are_skipped_with_reasons(tmp_path):
    write_demo_folder(tmp_path / "junk", n_patients=2, n_slices=3, matrix=64, junk=True)
    report = scan_folder(tmp_path / "junk")
    assert [len(s) for s in report.series] == [3, 3]
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert set(reasons) == {
        "LOCALIZER.dcm",
        "DOSE_SUMMARY.dcm",
        "TRUNCATED.dcm",
        "EMPTY",
        "README.txt",
    }
    assert "localizer" in reasons["LOCALIZER.dcm"]
    assert "secondary capture" in reasons["DOSE_SUMMARY.dcm"]
    assert "pixel data unreadable" in reasons["TRUNCATED.dcm"]


def test_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_demo_folder(tmp_path / "full", n_patients=1, n_slices=1, matrix=32)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    written = write_demo_folder(tmp_path / "empty", n_patients=1, n_slices=1, matrix=32)
    assert [p.split for p in written.patients] == ["train"]
    assert len(list((tmp_path / "empty").rglob("*.dcm"))) == 1
