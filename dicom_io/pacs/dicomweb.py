"""DICOMweb services with dicomweb-client: QIDO-RS (find), WADO-RS (retrieve), STOW-RS (store),
each failure turned into a `PacsError` naming the URL."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pydicom.filewriter import dcmwrite

from dicom_io.pacs.node import Node, PacsError, Receiver
from dicom_io.pacs.query import SeriesMatch, StudyMatch

_HINTS = {
    401: "credentials refused; check the username and the password's environment variable or file",
    403: "access forbidden; check the credentials and the node's permissions",
    404: "not found; check the URL (the DICOMweb root, e.g. http://host:8042/dicom-web) and UIDs",
}


@contextlib.contextmanager
def _talking(node: Node, what: str) -> Iterator[None]:
    try:
        yield
    except requests.exceptions.ConnectionError:
        raise PacsError(
            f"node {node}: {what}: cannot connect; check the URL and the network"
        ) from None
    except requests.exceptions.Timeout:
        raise PacsError(f"node {node}: {what}: timed out after {node.timeout:g} s") from None
    except requests.exceptions.HTTPError as error:
        code = error.response.status_code if error.response is not None else 0
        hint = _HINTS.get(code, "check the node's log")
        failure = PacsError(f"node {node}: {what}: HTTP {code}, {hint}")
        failure.http_status = code  # type: ignore[attr-defined]
        raise failure from None


def _http_status(error: PacsError) -> int:
    return int(getattr(error, "http_status", 0))


def client(node: Node) -> DICOMwebClient:
    """A client for ``node.dicomweb`` with basic auth and a CA file when given, retrying
    briefly."""
    session = requests.Session()
    if node.username is not None:
        session.auth = (node.username, node.password or "")
    if node.tls_ca_file is not None:
        session.verify = str(node.tls_ca_file)
    assert node.dicomweb is not None
    web = DICOMwebClient(node.dicomweb, session=session, timeout=node.timeout)
    # the library retries 5 times with back-off (about 30 s) even when nothing listens: 3 tries
    # within about a second are enough for a blip, and an unreachable node is told at once
    web.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)
    return web


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value", [])
    if not values:
        return ""
    value = values[0]
    if isinstance(value, dict):  # a person name
        return str(value.get("Alphabetic", ""))
    return str(value)


def studies(node: Node, filters: dict[str, str]) -> list[StudyMatch]:
    """QIDO-RS search for studies."""
    with _talking(node, "QIDO-RS study search"):
        found = client(node).search_for_studies(
            search_filters=filters,
            fields=["StudyDescription", "AccessionNumber", "PatientID", "PatientName"],
            get_remaining=True,
        )
    return [
        StudyMatch(
            study_uid=_value(d, "0020000D"),
            patient_id=_value(d, "00100020"),
            patient_name=_value(d, "00100010"),
            accession=_value(d, "00080050"),
            date=_value(d, "00080020"),
            description=_value(d, "00081030"),
        )
        for d in found
    ]


def series(node: Node, study_uid: str) -> list[SeriesMatch]:
    """QIDO-RS search for the series of a study."""
    with _talking(node, f"QIDO-RS series search of study {study_uid}"):
        found = client(node).search_for_series(
            study_uid,
            fields=["SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesNumber"],
            get_remaining=True,
        )
    return [
        SeriesMatch(
            series_uid=_value(d, "0020000E"),
            modality=_value(d, "00080060"),
            description=_value(d, "0008103E"),
            number=_value(d, "00200011"),
            instances=int(_value(d, "00201209")) if _value(d, "00201209") else None,
        )
        for d in found
    ]


def instances(node: Node, study_uid: str, series_uid: str) -> list[str]:
    """SOPInstanceUIDs of one series (QIDO-RS)."""
    with _talking(node, f"QIDO-RS instance search of series {series_uid}"):
        found = client(node).search_for_instances(study_uid, series_uid, get_remaining=True)
    return [_value(d, "00080018") for d in found]


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def retrieve(
    node: Node, study_uid: str, series_uid: str, sop_uids: list[str] | None, receive: Receiver
) -> None:
    """WADO-RS of a series (streamed), or of some of its instances one by one."""
    web = client(node)
    with _talking(node, f"WADO-RS of series {series_uid}"):
        if sop_uids is None:
            for ds in web.iter_series(study_uid, series_uid):
                receive(str(ds.SOPInstanceUID), series_uid, _encoded(ds))
            return
        for uid in sop_uids:
            ds = web.retrieve_instance(study_uid, series_uid, uid)
            receive(uid, series_uid, _encoded(ds))


def store(node: Node, files: list[tuple[str, str, Dataset]]) -> Iterator[tuple[int, str]]:
    """STOW-RS each (path, SOPInstanceUID, dataset): yields (status, text) as C-STORE would,
    0 when stored, 0xA700 (retried) when the server is busy, 0xC000 when it refuses."""
    web = client(node)
    for path, uid, ds in files:
        try:
            with _talking(node, f"STOW-RS of {path}"):
                answer = web.store_instances([ds])
        except PacsError as error:
            code = _http_status(error)
            if code in (429, 502, 503, 504):
                yield 0xA700, f"HTTP {code}"
                continue
            if code in (400, 409, 415):
                yield 0xC000, f"HTTP {code}"
                continue
            raise
        failed = [
            item
            for item in answer.get("FailedSOPSequence", [])
            if item.get("ReferencedSOPInstanceUID") == uid
        ]
        if failed:
            yield int(failed[0].get("FailureReason", 0xC000)), "in the FailedSOPSequence"
        else:
            yield 0, ""
