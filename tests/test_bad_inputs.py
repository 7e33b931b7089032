"""A corpus of bad or awkward inputs, each beside six good clinical slices.

The fixture takes six consecutive slices of the shared abdominal series (reduced to
128 x 128 by 4 x 4 block means so that 60 folders scan in seconds; headers, HU and
geometry stay clinical) and, per kind, writes one bad file next to them in its own
folder under tmp_path. For every kind: the scan raises nothing and prints nothing, the
six good slices form one series, and the bad file is reported with a reason that names
its field (or, for awkward-but-usable kinds, kept with a warning naming it).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import shared_folder
from dicom_fixtures import reduced_slice
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000, generate_uid

from dicom_io import format_ingest_report, ingest_report_to_dict, scan_folder
from pipelines.cli import main

pytestmark = pytest.mark.shared_data

GOOD = 6
SOURCE_SLICES = [f"1-{k:03d}.dcm" for k in range(60, 60 + GOOD)]


@pytest.fixture(scope="module")
def clinical(tmp_path_factory) -> Path:
    """Folder with the six reduced good slices (generated once per module)."""
    source = shared_folder("abdomen_ct_pancreas")
    folder = tmp_path_factory.mktemp("clinical")
    for name in SOURCE_SLICES:
        reduced_slice(source / name, folder / name)
    return folder


def _raw(ds: Dataset, keyword: str, text: str) -> None:
    """Store `text` verbatim in a numeric field (implicit VR: read back with its real VR)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, "LO", text)


def _variant(good: Path, dst: Path, change: Callable[[Dataset], None], new_uid=True) -> None:
    ds = pydicom.dcmread(good)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        change(ds)
        if new_uid:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(dst, enforce_file_format=True)


def _pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def _image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(out, format=fmt)
    return out.getvalue()


@dataclass(frozen=True)
class Kind:
    """One bad input: how to make it, and the fragments its outcome must contain."""

    make: Callable[[Path, list[Path]], None]
    fragments: tuple[str, ...]
    kept: bool = False  # usable: the file is a slice of the series, with a warning


def header(change: Callable[[Dataset], None], *fragments: str, new_uid: bool = True) -> Kind:
    """A copy of the middle good slice (at its own position) changed by `change`."""

    def make(folder: Path, good: list[Path]) -> None:
        def moved(ds: Dataset) -> None:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y, z + 1.5]  # between two good slices
            change(ds)

        _variant(good[2], folder / "bad.dcm", moved, new_uid)

    return Kind(make, fragments)


def file_bytes(data: Callable[[list[Path]], bytes], *fragments: str) -> Kind:
    def make(folder: Path, good: list[Path]) -> None:
        (folder / "bad.dcm").write_bytes(data(good))

    return Kind(make, fragments)


def kept(change: Callable[[Dataset], None], *fragments: str) -> Kind:
    kind = header(change, *fragments)
    return Kind(kind.make, fragments, kept=True)


def _as_unsigned_signed(ds: Dataset) -> None:
    """Signed HU written as int16 but declared unsigned (PixelRepresentation 0)."""
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    _pixels(ds, hu.astype(np.int16))
    ds.RescaleIntercept, ds.PixelRepresentation = 0, 0
    ds.BitsStored, ds.HighBit = 16, 15


def _as_signed_unsigned(ds: Dataset) -> None:
    """Unsigned values offset by 32768 (intercept -33768) but declared signed."""
    hu = ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)
    _pixels(ds, (hu + 32768).astype(np.uint16))
    ds.RescaleIntercept, ds.PixelRepresentation = -32768, 1
    ds.BitsStored, ds.HighBit = 16, 15


def _layout(rows: int, cols: int) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.Rows, ds.Columns = rows, cols

    return change


def _full_size_layout(folder: Path, good: list[Path]) -> None:
    """A native 512 x 512 clinical slice whose header says 1024 x 256."""
    source = shared_folder("abdomen_ct_pancreas") / "1-062.dcm"
    _variant(source, folder / "bad.dcm", _layout(1024, 256))


def _symlink_loop(folder: Path, good: list[Path]) -> None:
    (folder / "sub").mkdir()
    os.symlink(folder, folder / "sub" / "bad")


def _symlinked_subfolder(folder: Path, good: list[Path]) -> None:
    """Three good slices live in a folder reached only through a symlink."""
    elsewhere = folder.parent / f"{folder.name}_elsewhere"
    elsewhere.mkdir()
    for path in good[3:]:
        shutil.move(path, elsewhere / path.name)
    os.symlink(elsewhere, folder / "linked")


def _fifo(folder: Path, good: list[Path]) -> None:
    os.mkfifo(folder / "bad.dcm")


def _dangling(folder: Path, good: list[Path]) -> None:
    os.symlink(folder / "nowhere.dcm", folder / "bad.dcm")


def _hidden(folder: Path, good: list[Path]) -> None:
    (folder / ".bad").mkdir()
    shutil.copy(good[0], folder / ".bad" / "IM.dcm")


def _dicomdir(folder: Path, good: list[Path]) -> None:
    shutil.copy(shared_folder("head_phantom_clinical_folder") / "DIRFILE", folder / "bad.dcm")


def _lossy_j2k(ds: Dataset) -> None:
    ds.compress(JPEG2000, ds.pixel_array, j2k_psnr=[35])
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "10"
    ds.LossyImageCompressionMethod = "ISO_15444_1"


def _duplicate_uid(folder: Path, good: list[Path]) -> None:
    def moved(ds: Dataset) -> None:
        ds.ImagePositionPatient = [
            float(v) + (0, 0, 1.5)[i] for i, v in enumerate(ds.ImagePositionPatient)
        ]

    _variant(good[2], folder / "zz_bad.dcm", moved, new_uid=False)


def _duplicate_position(folder: Path, good: list[Path]) -> None:
    def noisy(ds: Dataset) -> None:
        _pixels(ds, ds.pixel_array + 1)

    _variant(good[2], folder / "zz_bad.dcm", noisy)


def _metal(ds: Dataset) -> None:
    stored = ds.pixel_array.copy()
    stored[60:62, 60:62] = 5600  # 4600 HU after the -1000 intercept
    ds.BitsStored, ds.HighBit = 16, 15
    _pixels(ds, stored)


def _mr(ds: Dataset) -> None:
    ds.Modality = "MR"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"


def _sop_class(uid: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid

    return change


def _orientation(row, col) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.ImageOrientationPatient = [*row, *col]

    return change


_C20, _S20 = math.cos(math.radians(20)), math.sin(math.radians(20))

KINDS: dict[str, Kind] = {
    # files that are not (complete) DICOM
    "empty file": file_bytes(lambda g: b"", "empty file"),
    "truncated header (300 bytes)": file_bytes(lambda g: g[0].read_bytes()[:300], "truncated"),
    "truncated header (1200 bytes)": file_bytes(
        lambda g: g[0].read_bytes()[:1200], "truncated DICOM header"
    ),
    "truncated pixel data": file_bytes(
        lambda g: g[0].read_bytes()[: len(g[0].read_bytes()) - 5000], "PixelData"
    ),
    "random bytes": file_bytes(lambda g: np.random.default_rng(0).bytes(4000), "not DICOM"),
    "DICM marker then garbage": file_bytes(
        lambda g: b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(3000), "DICOM"
    ),
    "PNG image": file_bytes(lambda g: _image_bytes("PNG"), "PNG image"),
    "JPEG image": file_bytes(lambda g: _image_bytes("JPEG"), "JPEG image"),
    "PDF": file_bytes(lambda g: b"%PDF-1.4\n" + b"x" * 100, "PDF document"),
    "ZIP": file_bytes(lambda g: b"PK\x03\x04" + b"\0" * 100, "ZIP archive"),
    "text file": file_bytes(lambda g: b"patient list\nnothing here\n", "text file"),
    "FIFO": Kind(_fifo, ("FIFO",)),
    "dangling symlink": Kind(_dangling, ("dangling symlink",)),
    "symlink loop": Kind(_symlink_loop, ("already scanned",)),
    "hidden folder": Kind(_hidden, ("hidden folder",)),
    "DICOMDIR": Kind(_dicomdir, ("DICOMDIR",)),
    # other objects
    "MR slice": header(_mr, "modality MR"),
    "secondary capture": header(_sop_class("1.2.840.10008.5.1.4.1.1.7"), "secondary capture"),
    "enhanced CT": header(_sop_class("1.2.840.10008.5.1.4.1.1.2.1"), "Enhanced CT"),
    "RT dose SOP class": header(_sop_class("1.2.840.10008.5.1.4.1.1.481.2"), "SOP class"),
    "localizer": header(
        lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]), "localizer"
    ),
    "no pixel data": header(lambda ds: delattr(ds, "PixelData"), "PixelData"),
    "SamplesPerPixel 3": header(lambda ds: setattr(ds, "SamplesPerPixel", 3), "SamplesPerPixel"),
    "NumberOfFrames 2": header(lambda ds: setattr(ds, "NumberOfFrames", 2), "NumberOfFrames"),
    # geometry fields
    "no ImagePositionPatient": header(
        lambda ds: delattr(ds, "ImagePositionPatient"), "ImagePositionPatient"
    ),
    "no ImageOrientationPatient": header(
        lambda ds: delattr(ds, "ImageOrientationPatient"), "ImageOrientationPatient"
    ),
    "no PixelSpacing": header(lambda ds: delattr(ds, "PixelSpacing"), "PixelSpacing"),
    "PixelSpacing with one value": header(
        lambda ds: setattr(ds, "PixelSpacing", ["4.3"]), "PixelSpacing", "1 value"
    ),
    "PixelSpacing with three values": header(
        lambda ds: setattr(ds, "PixelSpacing", ["4", "4", "4"]), "PixelSpacing", "3 value"
    ),
    "PixelSpacing non-numeric": header(
        lambda ds: _raw(ds, "PixelSpacing", "abc\\def"), "PixelSpacing"
    ),
    "PixelSpacing zero": header(
        lambda ds: setattr(ds, "PixelSpacing", ["0", "0"]), "PixelSpacing", "not positive"
    ),
    "PixelSpacing negative": header(
        lambda ds: setattr(ds, "PixelSpacing", ["-4.3", "4.3"]), "PixelSpacing", "not positive"
    ),
    "PixelSpacing NaN": header(lambda ds: _raw(ds, "PixelSpacing", "NaN\\4.3"), "PixelSpacing"),
    "ImageOrientationPatient with 5 values": header(
        _orientation((1, 0, 0), (0, 1)), "ImageOrientationPatient", "5 value"
    ),
    "ImageOrientationPatient non-numeric": header(
        lambda ds: _raw(ds, "ImageOrientationPatient", "1\\0\\0\\0\\x\\0"),
        "ImageOrientationPatient",
    ),
    "ImageOrientationPatient all zero": header(
        _orientation((0, 0, 0), (0, 0, 0)), "ImageOrientationPatient", "length"
    ),
    "ImageOrientationPatient parallel": header(
        _orientation((1, 0, 0), (1, 0, 0)), "ImageOrientationPatient", "deg apart"
    ),
    "ImagePositionPatient non-numeric": header(
        lambda ds: _raw(ds, "ImagePositionPatient", "a\\b\\c"), "ImagePositionPatient"
    ),
    "ImagePositionPatient with 2 values": header(
        lambda ds: setattr(ds, "ImagePositionPatient", ["1", "2"]),
        "ImagePositionPatient",
        "2 value",
    ),
    "ImagePositionPatient infinite": header(
        lambda ds: _raw(ds, "ImagePositionPatient", "0\\0\\inf"), "ImagePositionPatient"
    ),
    "sagittal slice": header(
        _orientation((0, 1, 0), (0, 0, -1)), "sagittal", "ImageOrientationPatient"
    ),
    "coronal slice": header(
        _orientation((1, 0, 0), (0, 0, -1)), "coronal", "ImageOrientationPatient"
    ),
    "oblique slice (not a tilt)": header(
        _orientation((_C20, 0, _S20), (0, 1, 0)), "oblique", "ImageOrientationPatient"
    ),
    "Rows x Columns 256 x 64 over 128 x 128": header(_layout(256, 64), "Rows x Columns"),
    "Rows x Columns 1024 x 256 over 512 x 512": Kind(
        _full_size_layout, ("Rows x Columns", "512 x 512")
    ),
    "Rows x Columns larger than the buffer": header(_layout(256, 256), "PixelData"),
    # rescale and pixel values
    "RescaleSlope 0": header(lambda ds: setattr(ds, "RescaleSlope", 0), "RescaleSlope is 0"),
    "RescaleSlope 1e6": header(
        lambda ds: setattr(ds, "RescaleSlope", "1e6"), "RescaleSlope", "plausible CT range"
    ),
    "RescaleIntercept 1e30": header(
        lambda ds: setattr(ds, "RescaleIntercept", "1e30"), "RescaleIntercept", "plausible CT range"
    ),
    "RescaleIntercept +5000": header(
        lambda ds: setattr(ds, "RescaleIntercept", 5000), "RescaleIntercept", "plausible CT range"
    ),
    "RescaleSlope NaN": header(lambda ds: _raw(ds, "RescaleSlope", "NaN"), "RescaleSlope"),
    "RescaleIntercept inf": header(
        lambda ds: _raw(ds, "RescaleIntercept", "inf"), "RescaleIntercept"
    ),
    "RescaleSlope non-numeric": header(lambda ds: _raw(ds, "RescaleSlope", "one"), "RescaleSlope"),
    "RescaleIntercept missing": header(
        lambda ds: delattr(ds, "RescaleIntercept"), "RescaleIntercept missing"
    ),
    "RescaleSlope 1e37 (overflows float32)": header(
        lambda ds: setattr(ds, "RescaleSlope", "1e37"), "not finite"
    ),
    "signed data declared unsigned": header(_as_unsigned_signed, "PixelRepresentation 0", "signed"),
    "unsigned data declared signed": header(
        _as_signed_unsigned, "PixelRepresentation 1", "unsigned"
    ),
    "lossy flag (LossyImageCompression 01)": header(
        lambda ds: setattr(ds, "LossyImageCompression", "01"),
        "LossyImageCompression 01",
        "allow_lossy",
    ),
    "lossy JPEG 2000 (PSNR 35 dB)": header(_lossy_j2k, "LossyImageCompression 01", "allow_lossy"),
    "duplicate SOPInstanceUID, other position": Kind(_duplicate_uid, ("duplicate SOPInstanceUID",)),
    "duplicate position, other pixels": Kind(_duplicate_position, ("duplicate slice position",)),
    # awkward but usable: kept, with a warning naming the field
    "InstanceNumber non-numeric": kept(
        lambda ds: _raw(ds, "InstanceNumber", "abc"), "InstanceNumber"
    ),
    "GantryDetectorTilt non-numeric": kept(
        lambda ds: _raw(ds, "GantryDetectorTilt", "tilt"), "GantryDetectorTilt"
    ),
    "metal above 4000 HU": kept(_metal, "above 4000 HU"),
    "symlinked subfolder": Kind(_symlinked_subfolder, (), kept=True),
}


@pytest.fixture
def corpus_folder(clinical: Path, tmp_path: Path, request) -> tuple[Path, list[Path], Kind]:
    kind = KINDS[request.param]
    folder = tmp_path / "in"
    shutil.copytree(clinical, folder)
    good = sorted(folder.glob("1-*.dcm"))
    kind.make(folder, good)
    return folder, good, kind


def test_the_corpus_is_large_enough():
    assert len(KINDS) >= 50


@pytest.mark.parametrize("corpus_folder", list(KINDS), indirect=True)
def test_bad_input_is_reported_and_good_slices_are_kept(corpus_folder, capfd):
    folder, good, kind = corpus_folder
    report = scan_folder(folder)  # must not raise
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == "", "pydicom or the reader printed"
    [series] = report.series
    names = [p.name for p in series.source_paths]
    for path in good:
        assert path.name in names, f"good slice {path.name} lost"
    text = format_ingest_report(report)
    ingest_report_to_dict(report)
    bad = [s for s in report.skipped if s.path.name in {"bad.dcm", "zz_bad.dcm", "bad", ".bad"}]
    if kind.kept:
        assert len(series) == GOOD + (0 if not kind.fragments else 1)
        notes = " | ".join(series.warnings)
        for fragment in kind.fragments:
            assert fragment in notes, (fragment, series.warnings)
        assert report.skipped == []
        return
    assert len(series) == GOOD, names
    [item] = bad
    for fragment in kind.fragments:
        assert fragment in item.reason, (fragment, item.reason)
    assert item.path.name in text and item.reason.split(":")[0] in text


def test_lossy_slices_are_kept_with_a_warning_when_allowed(clinical, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(clinical, folder)
    KINDS["lossy JPEG 2000 (PSNR 35 dB)"].make(folder, sorted(folder.glob("1-*.dcm")))
    [series] = scan_folder(folder, allow_lossy=True).series
    assert len(series) == GOOD + 1
    assert any("lossy-compressed (LossyImageCompression 01" in w for w in series.warnings)


def test_pydicom_messages_go_to_the_file_not_to_the_log(clinical, tmp_path, caplog):
    folder = tmp_path / "in"
    shutil.copytree(clinical, folder)
    KINDS["InstanceNumber non-numeric"].make(folder, sorted(folder.glob("1-*.dcm")))
    with caplog.at_level(logging.DEBUG):
        [series] = scan_folder(folder).series
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pydicom")] == []
    assert any("pydicom warned: Invalid value for VR IS: 'abc'" in w for w in series.warnings)


def test_ctrobust_ingest_on_the_whole_corpus_at_once(clinical, tmp_path, capsys):
    """Every bad file in one folder beside the good slices: one series, a short summary."""
    folder = tmp_path / "in"
    shutil.copytree(clinical, folder)
    good = sorted(folder.glob("1-*.dcm"))
    for k, (name, kind) in enumerate(KINDS.items()):
        if name == "symlinked subfolder":  # it moves good slices: covered on its own
            continue
        sub = folder / f"k{k:02d}"
        sub.mkdir()
        kind.make(sub, good)
    assert main(["ingest", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("1 CT series")
    assert len(out.splitlines()) < len(KINDS)  # grouped by reason, not a line per file
    assert main(["ingest", "--json", str(folder)]) == 0
    data = json.loads(capsys.readouterr().out)
    [series] = data["series"]
    assert series["slices"] >= GOOD
    assert sum(series["skipped_by_reason"].values()) > 20
    reasons = {Path(s["path"]).parent.name: s["reason"] for s in data["skipped"]}
    assert len(reasons) >= len(KINDS) - 5  # the kept kinds and the symlinked one
    assert all(reasons.values())
