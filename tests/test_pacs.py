"""PACS round trips against a real Orthanc (tests/orthanc_fixture.py): upload the abdominal
series with C-STORE, find it, pull it, run a tiny pipeline, push the derived series back, and
check in Orthanc that they are there, in the right study, marked as attacked; once over DIMSE
and once over DICOMweb (as the config stages pacs_pull / pacs_push); and every failure a user
can meet gives one line naming the node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import pytest
from conftest import shared_folder

import dicom_io.pacs.dimse as dimse
from dicom_io.pacs import Node, push_files
from dicom_io.pacs.pull import MANIFEST
from pipelines.cli import main
from tests.run_helpers import run_config

if TYPE_CHECKING:
    from orthanc_fixture import Orthanc


def free_port() -> int:
    """A port nothing listens on (the fixture module's, imported late: it is a pytest plugin)."""
    from orthanc_fixture import free_port as pick

    return pick()


pytest_plugins = ["orthanc_fixture"]

#: Instances of the abdominal series uploaded (a subset keeps the tiny runs fast).
UPLOADED = 8

RUN_CONFIG = """
name: pacs
seed: 0
data:
  n: 32
  slices_per_series: 4
  test_fraction: 0.34
physics: {views: 24, gt_views: 120, i0: 1.0e5}
model: {channels: [4, 8], num_res_units: 0}
train: {epochs: 1, batch_size: 4}
attack:
  eps: [0.05]
  n_iter: 2
  random_draws: 1
  max_slices: 1
  image_domain: {enabled: false}
instability: {enabled: false}
report: {enabled: false}
export: {nifti: false}
"""


def _dimse_flags(orthanc: Orthanc, called: str | None = None) -> list[str]:
    port = str(orthanc.dicom_port)
    return ["--host", "127.0.0.1", "--port", port, "--called-aet", called or orthanc.aet]


def _web_flags(orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DICOMweb flags with Orthanc's user; the password travels in an environment variable."""
    monkeypatch.setenv("ORTHANC_TEST_PASSWORD", orthanc.password)
    return ["--dicomweb", orthanc.dicomweb, "--username", orthanc.user]


WEB_PASSWORD = ["--password-env", "ORTHANC_TEST_PASSWORD"]


@pytest.fixture(scope="module")
def source(orthanc: Orthanc) -> dict:
    """The abdominal series' first instances, uploaded to Orthanc with C-STORE."""
    files = sorted(shared_folder("abdomen_ct_pancreas").glob("*.dcm"))[:UPLOADED]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, called_aet=orthanc.aet)
    assert push_files(node, {"abdomen": files}).stored == len(files)
    return {
        "study": str(headers[0].StudyInstanceUID),
        "series": str(headers[0].SeriesInstanceUID),
        "patient": str(headers[0].PatientID),
        "sops": {str(h.SOPInstanceUID) for h in headers},
    }


def _exported(files: list[Path]) -> dict[str, list[pydicom.Dataset]]:
    """Headers of exported files, by SeriesInstanceUID."""
    found: dict[str, list[pydicom.Dataset]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return found


def _check_in_orthanc(orthanc: Orthanc, files: list[Path], study_uid: str) -> None:
    """The series of ``files`` are in Orthanc, whole, in ``study_uid``; attacked ones marked."""
    exported = _exported(files)
    assert any("ATTACKED" in headers[0].ImageType for headers in exported.values())
    for uid, headers in exported.items():
        series = orthanc.lookup(uid)
        assert len(series["Instances"]) == len(headers)
        study = orthanc.get(f"/studies/{series['ParentStudy']}")
        assert study["MainDicomTags"]["StudyInstanceUID"] == study_uid  # type: ignore[index]
        tags = orthanc.get(f"/instances/{series['Instances'][0]}/simplified-tags")
        image_type = tags["ImageType"].split("\\")  # type: ignore[index]
        assert image_type[:2] == ["DERIVED", "SECONDARY"]
        if "ATTACKED" in headers[0].ImageType:
            assert image_type[3] == "ATTACKED"
            assert "ADVERSARIAL" in tags["SeriesDescription"]  # type: ignore[index]


@pytest.mark.slow
def test_dimse_find_pull_run_push(
    orthanc: Orthanc,
    source: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["pacs", "find", *_dimse_flags(orthanc), "--patient-id", source["patient"], "--json"])
        == 0
    )
    studies = json.loads(capsys.readouterr().out)
    assert [s["study_uid"] for s in studies] == [source["study"]]
    assert [(s["series_uid"], s["instances"]) for s in studies[0]["series"]] == [
        (source["series"], UPLOADED)
    ]

    pulled = tmp_path / "pulled"
    move = ["--move-port", str(orthanc.move_port), "--calling-aet", orthanc.ctrobust_aet]
    assert (
        main(
            [
                "pacs",
                "pull",
                *_dimse_flags(orthanc),
                *move,
                "--study-uid",
                source["study"],
                str(pulled),
            ]
        )
        == 0
    )
    files = sorted(pulled.glob("*/*.dcm"))
    assert {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files} == source[
        "sops"
    ]
    assert (pulled / MANIFEST).is_file() and not list(tmp_path.glob(".pulled*"))
    assert main(["ingest", str(pulled)]) == 0

    config = tmp_path / "run.yaml"
    config.write_text(RUN_CONFIG)
    run_dir = tmp_path / "run"
    # same_study: the derived series join the source study (the default is a research study)
    run_config(config, run_dir, f"data.folder={pulled}", "export.same_study=true")
    capsys.readouterr()
    assert main(["pacs", "push", str(run_dir), *_dimse_flags(orthanc)]) == 0
    lines = capsys.readouterr().out.splitlines()
    sent = list(run_dir.glob("dicom/*/*/*.dcm"))
    assert sum(line.strip().startswith("stored 0x0000") for line in lines) == len(sent) > 0
    _check_in_orthanc(orthanc, sent, source["study"])


@pytest.mark.slow
def test_dicomweb_round_trip_as_config_stages_pushes_the_deidentified_export(
    orthanc: Orthanc,
    source: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web = [*_web_flags(orthanc, monkeypatch), *WEB_PASSWORD]
    assert main(["pacs", "find", *web, "--study-uid", source["study"]]) == 0
    assert f"series {source['series']}  CT" in capsys.readouterr().out

    monkeypatch.setenv("CTROBUST_DEID_SALT", "a-salt-for-the-pacs-test")
    config = tmp_path / "run.yaml"
    config.write_text(RUN_CONFIG)
    run_dir = tmp_path / "run"
    node = (
        f"dicomweb: '{orthanc.dicomweb}', username: {orthanc.user}, "
        "password_env: ORTHANC_TEST_PASSWORD"
    )
    settings = (
        f"data.pacs={{{node}, study_uid: '{source['study']}'}}",
        f"export.pacs={{{node}, kinds: ['*attacked*', '*clean']}}",
        "export.deidentify.enabled=true",
    )
    first = run_config(config, run_dir, *settings)
    assert first["stages"]["pacs_pull"]["summary"]["instances"] == UPLOADED
    pushed = json.loads((run_dir / "cache" / "pacs_push" / "push.json").read_text())
    assert pushed["stored"] == len(pushed["instances"]) > 0
    assert not any("perturbation" in i["series"] for i in pushed["instances"])
    sent = [Path(i["path"]) for i in pushed["instances"]]
    headers = [ds for series in _exported(sent).values() for ds in series]
    research_study = {str(ds.StudyInstanceUID) for ds in headers}
    assert len(research_study) == 1 and source["study"] not in research_study
    assert source["patient"] not in {str(ds.PatientID) for ds in headers}
    _check_in_orthanc(orthanc, sent, research_study.pop())
    # outside cache/ only the config in run.json names the source study
    identifiers = [source["study"], source["series"], source["patient"], *source["sops"]]
    outside = [p for p in run_dir.rglob("*") if p.is_file() and "cache" not in p.parts]
    for path in outside:
        text = path.read_bytes()
        if path.name == "run.json":
            text = json.dumps({**json.loads(text), "config": None}).encode()
        assert not [i for i in identifiers if i.encode() in text], path

    again = run_config(config, run_dir, *settings)
    assert (
        again["stages"]["pacs_pull"]["status"] == again["stages"]["pacs_push"]["status"] == "cached"
    )


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run the CLI, expect a non-zero exit and one stderr line holding every ``expected``."""
    capsys.readouterr()
    assert main(argv) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_unreachable_nodes_and_unknown_ae_titles_say_which_node_and_what_to_check(
    orthanc: Orthanc,
    source: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = free_port()
    dimse_closed = ["--host", "127.0.0.1", "--port", str(closed), "--called-aet", "PACS"]
    _fails(["pacs", "find", *dimse_closed], capsys, f"127.0.0.1:{closed} PACS", "cannot connect")
    web_closed = f"http://127.0.0.1:{closed}/dicom-web"
    _fails(["pacs", "find", "--dicomweb", web_closed], capsys, web_closed, "cannot connect")
    web = _web_flags(orthanc, monkeypatch)
    (tmp_path / "wrong").write_text("not-the-password\n")
    _fails(
        ["pacs", "find", *web, "--password-file", str(tmp_path / "wrong")],
        capsys,
        f"DICOMweb {orthanc.dicomweb}",
        "HTTP 401, credentials refused",
    )
    root = f"{orthanc.http}/no-such-root"
    _fails(
        ["pacs", "find", *web, *WEB_PASSWORD, "--dicomweb", root],
        capsys,
        "HTTP 404",
        "check the URL",
    )
    _fails(
        ["pacs", "find", *_dimse_flags(orthanc, called="NOTORTHANC")],
        capsys,
        f"127.0.0.1:{orthanc.dicom_port} NOTORTHANC",
        "called AE title NOTORTHANC not recognised",
    )
    stranger = [*_dimse_flags(orthanc), "--calling-aet", "STRANGER", "--study-uid", source["study"]]
    _fails(
        ["pacs", "pull", *stranger, str(tmp_path / "by-get")],
        capsys,
        f"127.0.0.1:{orthanc.dicom_port} {orthanc.aet}",
        "C-GET",
        "calling AE title STRANGER",
    )
    _fails(
        ["pacs", "pull", *stranger, "--move-port", str(free_port()), str(tmp_path / "by-move")],
        capsys,
        "C-MOVE",
        "knows move destination STRANGER",
    )
    assert not list(tmp_path.glob("by-*"))
    _fails(["pacs", "find", "--host", "127.0.0.1"], capsys, "needs port, called_aet")


def test_a_missing_study_and_a_partial_retrieve_fail_and_the_pull_resumes(
    orthanc: Orthanc,
    source: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = tmp_path / "pulled"
    missing = ["--study-uid", "1.2.3.4", str(dest)]
    _fails(["pacs", "pull", *_dimse_flags(orthanc), *missing], capsys, "study 1.2.3.4 not found")
    web = [*_web_flags(orthanc, monkeypatch), *WEB_PASSWORD]
    _fails(["pacs", "pull", *web, *missing], capsys, "1.2.3.4 not found")

    real_handler = dimse._store_handler

    def refusing_the_third(receive: Callable) -> Callable:
        handle, calls = real_handler(receive), []

        def maybe(event: object) -> int:
            calls.append(event)
            return 0xA700 if len(calls) == 3 else handle(event)

        return maybe

    monkeypatch.setattr(dimse, "_store_handler", refusing_the_third)
    pull = ["pacs", "pull", *_dimse_flags(orthanc), "--study-uid", source["study"], str(dest)]
    _fails(pull, capsys, "partial retrieve", f"{UPLOADED - 1} of {UPLOADED}", "re-run")
    assert not dest.exists()  # a partial pull is never where ingest would read it
    partial = tmp_path / ".pulled.partial"
    assert len(list(partial.glob("*/*.dcm"))) == UPLOADED - 1

    monkeypatch.setattr(dimse, "_store_handler", real_handler)
    assert main(pull) == 0
    assert f"pulled 1 instances ({UPLOADED - 1} already there)" in capsys.readouterr().out
    assert len(list(dest.glob("*/*.dcm"))) == UPLOADED and not partial.exists()


def test_push_refused_by_the_node_names_the_series(
    orthanc: Orthanc, source: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orthanc refuses a storage SOP class it does not know: the push says which series."""
    original = next(shared_folder("abdomen_ct_pancreas").glob("*.dcm"))
    folder = tmp_path / "run" / "dicom" / "s01_test" / "plain_clean"
    folder.mkdir(parents=True)
    shutil.copy(original, folder / "0001.dcm")
    odd = pydicom.dcmread(original)
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.1"
    odd.SOPInstanceUID = odd.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    odd.save_as(folder / "0002.dcm")
    _fails(
        ["pacs", "push", str(tmp_path / "run"), *_dimse_flags(orthanc)],
        capsys,
        "rejected 1 of 2 instances of series s01_test/plain_clean",
        "0x0122",
    )


def test_dimse_over_mutual_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TLS-only Orthanc answers `find --tls` with ctrobust's certificate; plain DIMSE is told
    to check TLS."""
    from orthanc_fixture import orthanc_binary, running_orthanc

    openssl = shutil.which("openssl")
    if orthanc_binary() is None or openssl is None:
        pytest.skip("needs Orthanc with DICOMweb and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    tls = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(cert),
        "DicomTlsPrivateKey": str(key),
        "DicomTlsTrustedCertificates": str(cert),
    }
    (tmp_path / "orthanc").mkdir()
    with running_orthanc(tmp_path / "orthanc", tls) as server:
        flags = _dimse_flags(server)
        mutual = ["--tls", "--tls-ca-file", str(cert), "--tls-cert-file", str(cert)]
        mutual += ["--tls-key-file", str(key)]
        assert main(["pacs", "find", *flags, *mutual, "--json"]) == 1  # reached, and empty
        assert json.loads(capsys.readouterr().out) == []
        _fails(["pacs", "find", *flags, "--timeout", "5"], capsys, "check TLS (--tls)")


def test_configs_name_where_secrets_are_never_the_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctrobust.config import ConfigError, load_config
    from pipelines.pacs_nodes import node_from_config

    node = "{dicomweb: 'https://pacs.example/dicom-web', username: u, password_env: PACS_PW"
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  pacs: {node}, study_uid: '1.2.3'}}\n")
    with pytest.raises(ConfigError, match="password: unknown key"):
        load_config(config, ["data.pacs.password=secret"])
    with pytest.raises(ConfigError, match="data.folder or data.pacs"):
        load_config(config, [f"data.folder={tmp_path}"])
    pacs = load_config(config, []).data.pacs
    assert pacs is not None
    with pytest.raises(ValueError, match="PACS_PW is not set"):
        node_from_config(pacs, "data.pacs")
    monkeypatch.setenv("PACS_PW", "from-the-environment")
    assert node_from_config(pacs, "data.pacs").password == "from-the-environment"


def test_push_retries_an_instance_the_node_was_too_busy_for(
    orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0xA700 (out of resources) answer is retried on a new association, then stored."""
    files = sorted(shared_folder("abdomen_ct_pancreas").glob("*.dcm"))[-2:]
    real_store, calls = dimse.store, []

    def busy_once(node: Node, batch: list) -> Iterator[tuple[int, str]]:
        calls.append(len(batch))
        if len(calls) == 1:  # the first instance of the first association: "busy"
            yield 0xA700, "out of resources"
            yield from real_store(node, batch[1:])
        else:
            yield from real_store(node, batch)

    monkeypatch.setattr(dimse, "store", busy_once)
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, called_aet=orthanc.aet)
    result = push_files(node, {"s01/plain_clean": files}, backoff=0)
    assert calls == [2, 1]
    assert [(i.stored, i.attempts) for i in result.instances] == [(True, 1), (True, 2)]
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    assert orthanc.lookup(uid)["ID"]
