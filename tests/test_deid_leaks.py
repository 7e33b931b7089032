"""A de-identified run of a real series: no source identifier in any file outside cache/."""

from __future__ import annotations

import gzip
from pathlib import Path

import pydicom
import pytest

from pipelines.cli import main
from tests.conftest import shared_folder

SALT = "a-secret-salt-known-only-to-this-test"
IDENTIFYING = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SOPInstanceUID",
    "StudyDate",
    "StudyTime",
)


def _source_identifiers(folder: Path) -> set[str]:
    """Every identifying value of the source series (names also with ^ as a space)."""
    values: set[str] = set()
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in IDENTIFYING:
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 6:  # shorter values would match by chance in binary files
                values |= {value, value.replace("^", " ")}
    return values


def _readable(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


@pytest.mark.slow
@pytest.mark.shared_data
def test_deidentified_run_leaks_no_source_identifier(
    tiny_config: Path, tmp_path: Path, monkeypatch
) -> None:
    folder = shared_folder("abdomen_ct_pancreas")
    monkeypatch.setenv("CTROBUST_DEID_SALT", SALT)
    run = tmp_path / "run"
    code = main(
        [
            "run",
            str(tiny_config),
            "--out",
            str(run),
            "--quiet",
            "--set",
            f"data.folder={folder}",
            "--set",
            "data.slices_per_series=6",
            "--set",
            "export.deidentify.enabled=true",
        ]
    )
    assert code == 0
    secrets = _source_identifiers(folder) | {SALT}
    files = [p for p in run.rglob("*") if p.is_file() and "cache" not in p.relative_to(run).parts]
    assert any(p.suffix == ".dcm" for p in files) and (run / "report" / "index.html") in files
    leaks = {
        str(p.relative_to(run)): value
        for p in files
        for value in secrets
        if value.encode() in _readable(p)
    }
    assert leaks == {}


def test_the_salt_comes_from_a_file_or_the_environment_else_a_kept_random_one(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    import logging

    from ctrobust.config import ConfigError, DeidentifyConfig
    from pipelines.deid_salt import resolve_salt

    log = logging.getLogger("test")
    secret = tmp_path / "salt.txt"
    secret.write_text("from-a-file\n")
    assert resolve_salt(DeidentifyConfig(salt_file=secret), tmp_path, log).value == "from-a-file"
    monkeypatch.setenv("CTROBUST_DEID_SALT", "from-the-environment")
    assert resolve_salt(DeidentifyConfig(), tmp_path, log).value == "from-the-environment"
    monkeypatch.delenv("CTROBUST_DEID_SALT")
    first = resolve_salt(DeidentifyConfig(), tmp_path / "run", log)
    again = resolve_salt(DeidentifyConfig(), tmp_path / "run", log)
    other = resolve_salt(DeidentifyConfig(), tmp_path / "other", log)
    assert first == again and first.value != other.value, "kept per run folder, new per run"
    assert "pseudonyms differ from any other run's" in caplog.text
    assert first.value not in first.fingerprint
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="salt_file.*empty"):
        resolve_salt(DeidentifyConfig(salt_file=tmp_path / "empty"), tmp_path, log)
