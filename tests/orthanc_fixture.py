"""A real Orthanc on 127.0.0.1 for the PACS tests: its own storage, DICOM port, AE title and
DICOMweb root (basic auth, a password drawn per start), remote access off, started once per
test session and stopped by its PID."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ORTHANC_AET = "ORTHANCTEST"
CTROBUST_AET = "CTROBUST"
#: The HTTP (REST and DICOMweb) user; its password is drawn per Orthanc started.
HTTP_USER = "ctrobust"
DICOMWEB_PLUGINS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    """Where the test Orthanc listens, and the port its modality CTROBUST receives C-MOVEs on."""

    dicom_port: int
    http_port: int
    move_port: int
    pid: int
    password: str = field(repr=False)
    user: str = HTTP_USER
    aet: str = ORTHANC_AET
    ctrobust_aet: str = CTROBUST_AET

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def _open(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        request = urllib.request.Request(f"{self.http}{path}", data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read()

    def get(self, path: str) -> object:
        """A REST answer of Orthanc, decoded from JSON."""
        return json.loads(self._open(path))

    def lookup(self, uid: str) -> dict:
        """Orthanc's record (MainDicomTags, ParentStudy, Instances...) of a UID it stores."""
        found = json.loads(self._open("/tools/lookup", data=uid.encode()))
        if not found:
            raise LookupError(f"Orthanc holds nothing with UID {uid}")
        return self.get(found[0]["Path"])  # type: ignore[return-value]

    def delete_all(self) -> None:
        """Empty Orthanc (between tests that each upload their own data)."""
        for patient in self.get("/patients"):  # type: ignore[union-attr]
            self._open(f"/patients/{patient}", method="DELETE")


def _config(root: Path, dicom_port: int, http_port: int, move_port: int, password: str) -> dict:
    plugins = [str(p) for p in DICOMWEB_PLUGINS if p.is_file()][:1]
    return {
        "Name": "ctrobust-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {HTTP_USER: password},
        "DicomCheckCalledAet": True,
        # any AE title may query and ask for a C-MOVE (to a known destination), only the
        # known one may C-GET
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {"ctrobust": [CTROBUST_AET, "127.0.0.1", move_port]},
        "Plugins": plugins,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
    }


def _wait_until_up(orthanc: Orthanc, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start: {log.read_text()[-2000:]}")
        try:
            orthanc.get("/system")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not answer on {orthanc.http}/system within 30 s")


def orthanc_binary() -> str | None:
    """Orthanc's executable, when Orthanc and its DICOMweb plugin are installed."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    return binary if binary and any(p.is_file() for p in DICOMWEB_PLUGINS) else None


@contextlib.contextmanager
def running_orthanc(root: Path, extra: dict | None = None) -> Iterator[Orthanc]:
    """Orthanc with its storage and log under ``root`` (``extra`` options added to its
    configuration), stopped by its PID on exit."""
    binary = orthanc_binary()
    if binary is None:
        raise RuntimeError("Orthanc with its DICOMweb plugin is not installed")
    ports = free_port(), free_port(), free_port()
    password = secrets.token_urlsafe(12)
    config = {**_config(root, *ports, password), **(extra or {})}
    (root / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = root / "orthanc.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, str(root / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT
        )
    server = Orthanc(*ports, pid=process.pid, password=password)
    try:
        _wait_until_up(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A running Orthanc; skips when Orthanc or its DICOMweb plugin is not installed."""
    if orthanc_binary() is None:
        pytest.skip(
            "Orthanc with DICOMweb is not installed (Debian packages orthanc, orthanc-dicomweb; "
            ".ci/run installs them)"
        )
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
