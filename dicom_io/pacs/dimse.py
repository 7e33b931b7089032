"""DIMSE services with pynetdicom: C-FIND, C-GET, C-MOVE (with a storage SCP started for the
duration) and C-STORE, each failure turned into a `PacsError` naming the node."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, DEFAULT_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_io.pacs.node import Node, PacsError, Receiver, TransientPacsError
from dicom_io.pacs.query import SeriesMatch, StudyMatch

#: Storage SOP classes a pull accepts: the CT images ctrobust reads.
PULLED_CLASSES = (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    SecondaryCaptureImageStorage,
)

_PENDING = (0xFF00, 0xFF01)
_REJECT_REASONS = {
    (1, 2): "application context not supported",
    (1, 3): "calling AE title {calling} not recognised: check that the node lists it",
    (1, 7): "called AE title {called} not recognised: check --called-aet",
    (2, 1): "no reason given by the node's service provider",
    (3, 1): "the node is temporarily congested: try again later",
    (3, 2): "the node's local limit of associations is exceeded: try again later",
}


def _reachable(node: Node) -> None:
    """Fail with one line when nothing listens at host:port (before pynetdicom's own logs)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=node.timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PacsError(
            f"node {node}: cannot connect ({reason}); check the host, the port and the firewall"
        ) from None


def _rejection(node: Node, primitive: A_ASSOCIATE | None) -> PacsError:
    if primitive is None:
        return PacsError(f"node {node}: association rejected; check the AE titles")
    key = (int(primitive.result_source or 0), int(primitive.diagnostic or 0))
    text = _REJECT_REASONS.get(key, f"source {key[0]}, reason {key[1]}")
    reason = text.format(calling=node.calling_aet, called=node.called_aet)
    return PacsError(f"node {node}: association rejected, {reason}")


@contextlib.contextmanager
def associate(
    node: Node,
    contexts: list[tuple[str, list[str]]],
    roles: list[Any] | None = None,
    evt_handlers: list[Any] | None = None,
) -> Iterator[Association]:
    """An established association with the requested (abstract syntax, transfer syntaxes)."""
    _reachable(node)
    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    answer: list[A_ASSOCIATE] = []

    def keep_answer(event: evt.Event) -> None:
        if isinstance(event.primitive, A_ASSOCIATE) and event.primitive.result in (1, 2):
            answer.append(event.primitive)

    handlers = [(evt.EVT_ACSE_RECV, keep_answer), *(evt_handlers or [])]
    context = node.ssl_context()
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.called_aet,
        ext_neg=roles,
        tls_args=(context, node.host) if context else None,
        evt_handlers=handlers,
    )
    if assoc.is_rejected:
        raise _rejection(node, answer[0] if answer else None)
    if not assoc.is_established and assoc.rejected_contexts and not assoc.accepted_contexts:
        refused = ", ".join(sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts}))
        raise PacsError(
            f"node {node}: refused every presentation context ({refused}); check that the node "
            "accepts these SOP classes and transfer syntaxes"
        )
    if not assoc.is_established:
        raise PacsError(
            f"node {node}: association aborted or timed out; check TLS (--tls), the AE titles "
            "and that the node offers the service"
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _failed(node: Node, what: str, status: Dataset | None, hint: str = "") -> PacsError:
    hint = hint or "check that the node allows this AE title the service"
    if status is None or "Status" not in status:
        return PacsError(
            f"node {node}: {what}: the node aborted or did not answer; check that it knows "
            f"calling AE title {node.calling_aet} (its modalities) and allows it this service"
        )
    code = int(status.Status)
    comment = f" ({status.ErrorComment})" if "ErrorComment" in status else ""
    return PacsError(f"node {node}: {what} failed with status 0x{code:04X}{comment}; {hint}")


def _find(node: Node, query: Dataset) -> list[Dataset]:
    model = StudyRootQueryRetrieveInformationModelFind
    found = []
    with associate(node, [(model, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
        for status, identifier in assoc.send_c_find(query, model):
            if int(status.get("Status", -1)) in _PENDING:
                found.append(identifier)
            elif int(status.get("Status", -1)) != 0:
                raise _failed(node, f"C-FIND at {query.QueryRetrieveLevel} level", status)
    return found


def _query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def studies(node: Node, filters: dict[str, str]) -> list[StudyMatch]:
    """C-FIND at STUDY level."""
    keys = dict.fromkeys(
        ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "StudyDate"), ""
    )
    keys["StudyDescription"] = ""
    found = _find(node, _query("STUDY", **{**keys, **filters}))
    return [
        StudyMatch(
            study_uid=str(d.get("StudyInstanceUID", "")),
            patient_id=str(d.get("PatientID", "")),
            patient_name=str(d.get("PatientName", "")),
            accession=str(d.get("AccessionNumber", "")),
            date=str(d.get("StudyDate", "")),
            description=str(d.get("StudyDescription", "")),
        )
        for d in found
    ]


def series(node: Node, study_uid: str) -> list[SeriesMatch]:
    """C-FIND at SERIES level within one study."""
    query = _query(
        "SERIES",
        StudyInstanceUID=study_uid,
        SeriesInstanceUID="",
        Modality="",
        SeriesDescription="",
        SeriesNumber="",
        NumberOfSeriesRelatedInstances="",
    )
    return [
        SeriesMatch(
            series_uid=str(d.get("SeriesInstanceUID", "")),
            modality=str(d.get("Modality", "")),
            description=str(d.get("SeriesDescription", "")),
            number=str(d.get("SeriesNumber", "")),
            instances=int(d.NumberOfSeriesRelatedInstances)
            if d.get("NumberOfSeriesRelatedInstances") not in (None, "")
            else None,
        )
        for d in _find(node, query)
    ]


def instances(node: Node, study_uid: str, series_uid: str) -> list[str]:
    """SOPInstanceUIDs of one series (C-FIND at IMAGE level)."""
    query = _query(
        "IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, SOPInstanceUID=""
    )
    return [str(d.SOPInstanceUID) for d in _find(node, query)]


def _store_handler(receive: Receiver) -> Callable[[evt.Event], int]:
    def handle(event: evt.Event) -> int:
        data = event.encoded_dataset(include_meta=True)
        receive(
            str(event.request.AffectedSOPInstanceUID), str(event.dataset.SeriesInstanceUID), data
        )
        return 0x0000

    return handle


def _retrieve_query(study_uid: str, series_uid: str, sop_uids: list[str] | None) -> Dataset:
    if sop_uids is None:
        return _query("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid)
    query = _query("IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid)
    query.SOPInstanceUID = sop_uids
    return query


def _final(node: Node, what: str, responses: Iterator[tuple[Dataset, Any]], hint: str = "") -> None:
    last = None
    for status, _ in responses:
        last = status
        if status is None or int(status.get("Status", -1)) not in _PENDING:
            break
    if last is None or int(last.get("Status", -1)) not in (0x0000, 0xB000):
        raise _failed(node, what, last, hint)


def retrieve(
    node: Node, study_uid: str, series_uid: str, sop_uids: list[str] | None, receive: Receiver
) -> None:
    """C-GET (or C-MOVE with ``node.move_port``) of a series, or of some of its instances.

    Completeness is checked by the caller against the instance list: a warning status
    (some sub-operations failed) is not an error here.
    """
    query = _retrieve_query(study_uid, series_uid, sop_uids)
    handlers = [(evt.EVT_C_STORE, _store_handler(receive))]
    if node.move_port is None:
        model = StudyRootQueryRetrieveInformationModelGet
        contexts = [(model, DEFAULT_TRANSFER_SYNTAXES)]
        contexts += [(uid, ALL_TRANSFER_SYNTAXES) for uid in PULLED_CLASSES]
        roles = [build_role(uid, scp_role=True) for uid in PULLED_CLASSES]
        with associate(node, contexts, roles, evt_handlers=handlers) as assoc:
            _final(node, f"C-GET of series {series_uid}", assoc.send_c_get(query, model))
        return
    model = StudyRootQueryRetrieveInformationModelMove
    scp = AE(ae_title=node.calling_aet)
    scp.network_timeout = scp.dimse_timeout = node.timeout
    for uid in PULLED_CLASSES:
        scp.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    try:
        server = scp.start_server(
            ("", node.move_port),
            block=False,
            evt_handlers=handlers,
            ssl_context=node.ssl_context(server=True),
        )
    except OSError as error:
        raise PacsError(
            f"C-MOVE from {node}: cannot listen on port {node.move_port} ({error.strerror}); "
            "choose a free --move-port"
        ) from None
    try:
        with associate(node, [(model, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
            moves = assoc.send_c_move(query, node.calling_aet, model)
            hint = (
                f"check that the node knows move destination {node.calling_aet} at this host "
                f"and port {node.move_port} (its modalities)"
            )
            _final(node, f"C-MOVE of series {series_uid} to {node.calling_aet}", moves, hint)
    finally:
        server.shutdown()


def store(node: Node, files: list[tuple[str, str, Dataset]]) -> Iterator[tuple[int, str]]:
    """C-STORE each (path, SOPInstanceUID, dataset) on one association: yields (status, text).

    A lost association mid-way raises `PacsError`; the caller retries what was not stored.
    """
    pairs = sorted(
        {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, _, ds in files}
    )
    contexts: dict[str, list[str]] = {}
    for sop_class, syntax in pairs:
        contexts.setdefault(sop_class, []).append(syntax)
    with associate(node, list(contexts.items())) as assoc:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        for path, _, ds in files:
            if (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) not in accepted:
                yield 0x0122, "SOP class or transfer syntax refused at association"
                continue
            status = assoc.send_c_store(ds)
            if status is None or "Status" not in status:
                raise TransientPacsError(
                    f"node {node}: C-STORE of {path}: no answer (connection lost)"
                )
            code = int(status.Status)
            comment = str(status.get("ErrorComment", ""))
            yield code, comment
