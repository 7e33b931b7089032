"""The ingest stage in a run: a changed input folder re-runs it, export uses what it cached,
and a folder with nothing usable says why per series."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import generate_uid

from ctrobust.config import load_config
from ctrobust.demo_data import write_demo_folder
from dicom_io import (
    derived_text,
    folder_digest,
    read_folder,
    source_from_dict,
    source_to_dict,
    write_series,
)
from pipelines.cli import main
from pipelines.runner import RunContext
from pipelines.stages import ingest

FAST = ["instability.enabled=false", "report.enabled=false", "attack.enabled=false"]


def _run(config: Path, out: Path, folder: Path) -> dict:
    args = ["run", str(config), "--out", str(out), "--quiet", "--set", f"data.folder={folder}"]
    for item in FAST:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "run.json").read_text())


def _exported_sources(out: Path, folder: Path) -> list[tuple[str, float, float]]:
    """(referenced source UID, exported slice z, z of the file with that UID now)."""
    current = {}
    for path in folder.rglob("IM*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        current[ds.SOPInstanceUID] = float(ds.ImagePositionPatient[2])
    found = []
    for path in sorted(out.glob("dicom/*/plain_clean/*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        found.append((uid, float(ds.ImagePositionPatient[2]), current.get(uid, float("nan"))))
    return found


@pytest.mark.slow
def test_a_changed_input_folder_reruns_ingest_and_export_references_the_right_files(
    tiny_config: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "clinic"
    write_demo_folder(folder, n_patients=3, n_slices=6, matrix=64)
    out = tmp_path / "run"
    _run(tiny_config, out, folder)
    before = _exported_sources(out, folder)
    assert before and all(z == now for _, z, now in before)

    # the test patient's first slice is replaced by a copy of its second, moved 2 mm
    test_patient = sorted(p for p in folder.iterdir() if p.is_dir())[-1]
    first, second = sorted(test_patient.glob("IM*.dcm"))[:2]
    ds = pydicom.dcmread(second)
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) - 2.0
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    first.unlink()
    ds.save_as(test_patient / "IM00000.dcm", enforce_file_format=True)

    second_run = _run(tiny_config, out, folder)
    status = {name: s["status"] for name, s in second_run["stages"].items()}
    assert status["ingest"] == status["simulate"] == status["export"] == "done", status
    after = _exported_sources(out, folder)
    assert after and all(z == now for _, z, now in after), after
    assert {uid for uid, _, _ in after} != {uid for uid, _, _ in before}

    third = _run(tiny_config, out, folder)  # unchanged folder: nothing recomputed
    assert {s["status"] for s in third["stages"].values()} <= {"cached", "disabled"}


def test_folder_digest_follows_every_change(tmp_path: Path) -> None:
    write_demo_folder(tmp_path / "f", n_patients=1, n_slices=3, matrix=32)
    folder = tmp_path / "f"
    digest = folder_digest(folder)
    assert folder_digest(folder) == digest
    [a, b, _] = sorted(folder.rglob("IM*.dcm"))
    stat = a.stat()
    shutil.copyfile(b, a)  # another slice under the old name, size and mtime
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert a.stat().st_size == stat.st_size
    assert folder_digest(folder) != digest  # the SOPInstanceUID tells them apart


def test_source_record_exports_the_same_series_as_the_scan(tmp_path: Path) -> None:
    write_demo_folder(tmp_path / "f", n_patients=1, n_slices=4, matrix=32)
    [series] = read_folder(tmp_path / "f")
    record = json.loads(json.dumps(source_to_dict(series)))
    restored = source_from_dict(record)
    assert len(restored) == len(series) and restored.key == series.key
    volume = series.hu[:, ::2, ::2]
    text = derived_text("clean", "test")
    a = write_series(volume, series, tmp_path / "a", "clean", *text)
    b = write_series(volume, restored, tmp_path / "b", "clean", *text)
    for pa, pb in zip(a.paths, b.paths, strict=True):
        da, db = pydicom.dcmread(pa), pydicom.dcmread(pb)
        stamps = ("SOPInstanceUID", "SeriesInstanceUID", "InstanceCreationDate")
        stamps += ("InstanceCreationTime", "SeriesDate", "SeriesTime", "ContentDate", "ContentTime")
        for ds in (da, db):  # a new identity and the time of writing in every export
            for keyword in stamps:
                ds.pop(keyword, None)
        ta, tb = ({k: v for k, v in d.to_json_dict().items() if k != "7FE00010"} for d in (da, db))
        assert ta == tb
        np.testing.assert_array_equal(da.pixel_array, db.pixel_array)


def _refused_folder(tmp_path: Path, n_slices: int, sagittal: bool) -> Path:
    write_demo_folder(tmp_path / "f", n_patients=1, n_slices=n_slices, matrix=32)
    if sagittal:
        for path in (tmp_path / "f").rglob("IM*.dcm"):
            ds = pydicom.dcmread(path)
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            ds.save_as(path, enforce_file_format=True)
    return tmp_path / "f"


def test_run_on_a_folder_without_usable_series_names_the_cause_per_series(
    tiny_config: Path, tmp_path: Path, capsys
) -> None:
    folder = _refused_folder(tmp_path, 3, sagittal=True)
    (folder / "notes.txt").write_text("hello\n")
    args = ["run", str(tiny_config), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--set", f"data.folder={folder}"]) == 2
    err = capsys.readouterr().err
    assert "no usable axial CT series" in err
    assert "3 not axial" in err and "sagittal" in err  # the refused series, once
    assert "1 other file(s): 1 not DICOM" in err


def test_a_single_slice_is_not_blamed_on_the_test_fraction(
    tiny_config: Path, tmp_path: Path, capsys
) -> None:
    folder = _refused_folder(tmp_path, 1, sagittal=False)
    args = ["run", str(tiny_config), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--set", f"data.folder={folder}"]) == 2
    err = capsys.readouterr().err
    assert "only 1 usable slice(s)" in err and "test_fraction" not in err


def test_data_allow_lossy_decides_whether_lossy_slices_are_used(
    tiny_config: Path, tmp_path: Path
) -> None:
    folder = _refused_folder(tmp_path, 3, sagittal=False)
    for path in folder.rglob("IM*.dcm"):
        ds = pydicom.dcmread(path)
        ds.LossyImageCompression = "01"
        ds.save_as(path, enforce_file_format=True)
    for allow in (False, True):
        cfg = load_config(tiny_config, [f"data.folder={folder}", f"data.allow_lossy={allow}"])
        run_dir = tmp_path / f"run_{allow}"
        ctx = RunContext(cfg, run_dir, torch.device("cpu"), logging.getLogger("test"))
        (run_dir / "out").mkdir(parents=True)
        if not allow:
            with pytest.raises(ValueError, match="3 lossy-compressed"):
                ingest.run(ctx, run_dir / "out")
            continue
        summary = ingest.run(ctx, run_dir / "out")
        assert summary["slices_used"] == 3
        [record] = json.loads((run_dir / "out" / "ingest.json").read_text())["series"]
        assert any("lossy-compressed" in w for w in record["warnings"])
