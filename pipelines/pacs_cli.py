"""``ctrobust pacs find|pull|push``: studies from and derived series to a DICOM node, over DIMSE
(host, port, AE titles) or DICOMweb (--dicomweb URL). Nothing is sent anywhere the command
line does not name."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ctrobust.config import ConfigError, PacsNodeConfig
from dicom_io.pacs import Node, find_studies, pull_study, push_files, run_dicom_files
from dicom_io.pacs.push import InstanceStatus
from dicom_io.pacs.query import study_filters
from pipelines.pacs_nodes import node_from_config

_NODE_FLAGS = (
    "host",
    "port",
    "called_aet",
    "calling_aet",
    "move_port",
    "tls",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "dicomweb",
    "username",
    "password_env",
    "password_file",
    "timeout",
)


def _node(args: argparse.Namespace) -> Node:
    """The node the flags describe, checked like a config's data.pacs / export.pacs."""
    given = {k: getattr(args, k) for k in _NODE_FLAGS if getattr(args, k, None) is not None}
    try:
        section = PacsNodeConfig.model_validate(given)
    except ValidationError as error:
        first = error.errors()[0]
        flag = (
            "--" + "-".join(str(p) for p in first["loc"]).replace("_", "-") if first["loc"] else ""
        )
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"pacs {args.pacs_command}: {flag + ': ' if flag else ''}{message}"
        ) from None
    return node_from_config(section, f"pacs {args.pacs_command}")


def _show_progress() -> bool:
    return sys.stderr.isatty()


def cmd_find(args: argparse.Namespace) -> int:
    node = _node(args)
    filters = study_filters(args.patient_id, args.study_uid, args.accession)
    studies = find_studies(node, filters, modality=args.modality)
    if args.json:
        print(json.dumps([s.to_dict() for s in studies], indent=2))
    else:
        for study in studies:
            print(
                f"study {study.study_uid}  patient {study.patient_id or '-'}  "
                f"date {study.date or '-'}  accession {study.accession or '-'}  "
                f"{study.description!r}"
            )
            for s in study.series:
                count = "?" if s.instances is None else s.instances
                print(
                    f"  series {s.series_uid}  {s.modality} #{s.number or '-'}  {count} slices"
                    f"  {s.description!r}"
                )
    if not studies:
        print(f"pacs find: no study with a {args.modality} series on {node}", file=sys.stderr)
        return 1
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    node = _node(args)
    dest = Path(args.dest_dir)
    result = pull_study(node, args.study_uid, dest, args.series_uid, progress=_show_progress())
    total = sum(result.series.values())
    print(
        f"pulled {result.retrieved} instances ({result.already_there} already there), "
        f"{total} in {len(result.series)} series, from {node} into {dest}; "
        f"next: ctrobust ingest {dest}"
    )
    return 0


def _print_status(status: InstanceStatus) -> None:
    word = "stored" if status.stored else "REFUSED"
    text = f" {status.text}" if status.text else ""
    print(f"  {word} 0x{status.status:04X}{text}  {status.path}")


def cmd_push(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"pacs push: '{run_dir}' is not a run folder")
    node = _node(args)
    series = run_dicom_files(run_dir, args.kinds)
    result = push_files(node, series, report=None if args.quiet else _print_status)
    print(f"pushed {result.stored} instances of {len(series)} series to {node}")
    return 0


def _add_node_flags(parser: argparse.ArgumentParser, retrieve: bool = False) -> None:
    dimse = parser.add_argument_group("DIMSE node (or --dicomweb)")
    dimse.add_argument("--host", help="the node's host name or address")
    dimse.add_argument("--port", type=int, help="the node's DICOM port")
    dimse.add_argument("--called-aet", metavar="AET", help="the node's AE title")
    dimse.add_argument(
        "--calling-aet", metavar="AET", help="ctrobust's AE title (default CTROBUST)"
    )
    if retrieve:
        dimse.add_argument(
            "--move-port",
            type=int,
            metavar="PORT",
            help="retrieve with C-MOVE to a storage SCP ctrobust starts on PORT (the node must "
            "know the calling AE title at this host and port); default: C-GET",
        )
    dimse.add_argument("--tls", action="store_true", default=None, help="DIMSE over TLS")
    dimse.add_argument("--tls-ca-file", type=Path, metavar="FILE", help="CA bundle of the node")
    dimse.add_argument("--tls-cert-file", type=Path, metavar="FILE", help="ctrobust's certificate")
    dimse.add_argument("--tls-key-file", type=Path, metavar="FILE", help="its private key")
    web = parser.add_argument_group("DICOMweb node")
    web.add_argument(
        "--dicomweb", metavar="URL", help="DICOMweb root, e.g. http://pacs:8042/dicom-web"
    )
    web.add_argument("--username", help="basic-auth user")
    web.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the password"
    )
    web.add_argument("--password-file", type=Path, metavar="FILE", help="file holding the password")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the node (default 30)")


def add_pacs_parser(sub: Any) -> None:
    """Register ``ctrobust pacs find|pull|push``."""
    pacs = sub.add_parser(
        "pacs",
        help="find studies on a DICOM node, pull one into a folder, push a run's series back",
        description="Talk to a PACS over DIMSE (C-FIND, C-GET/C-MOVE, C-STORE) or DICOMweb "
        "(QIDO-RS, WADO-RS, STOW-RS). Passwords come from --password-env or --password-file.",
    )
    commands = pacs.add_subparsers(dest="pacs_command", required=True, metavar="COMMAND")

    find = commands.add_parser(
        "find",
        help="list matching studies and their CT series (UIDs, descriptions, slice counts)",
        description="Query the node (C-FIND or QIDO-RS) for studies and their series.",
    )
    _add_node_flags(find)
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--study-uid", metavar="UID")
    find.add_argument("--accession", metavar="A", help="accession number")
    find.add_argument("--modality", default="CT", help="series modality listed (default CT)")
    find.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    find.set_defaults(func=cmd_find)

    pull = commands.add_parser(
        "pull",
        help="retrieve a study's CT series into DEST_DIR, a folder `ctrobust ingest` reads",
        description="Retrieve (C-GET, C-MOVE or WADO-RS) into DEST_DIR atomically: instances "
        "arrive in .DEST_DIR.partial/ beside it, renamed to DEST_DIR only when complete. "
        "Re-running resumes, skipping instances already there.",
    )
    _add_node_flags(pull, retrieve=True)
    pull.add_argument("--study-uid", required=True, metavar="UID")
    pull.add_argument(
        "--series-uid",
        action="append",
        metavar="UID",
        help="a series to pull (repeatable); default: every CT series of the study but "
        "the derived series ctrobust pushed (descriptions starting 'ctrobust')",
    )
    pull.add_argument(
        "dest_dir", metavar="DEST_DIR", help="new folder, or one an earlier pull wrote"
    )
    pull.set_defaults(func=cmd_pull)

    push = commands.add_parser(
        "push",
        help="send RUN_DIR/dicom/ (the exported series) to the node with C-STORE or STOW-RS",
        description="Send a run's exported DICOM series (de-identified when the run's export "
        "was), printing each instance's status; transient failures are retried, a rejection "
        "ends with a line naming the series.",
    )
    push.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `ctrobust run`")
    _add_node_flags(push)
    push.add_argument(
        "--kinds",
        nargs="+",
        metavar="PATTERN",
        help="kinds to send, as shell patterns, e.g. '*attacked*' '*clean' (default: all)",
    )
    push.add_argument("--quiet", action="store_true", help="no line per instance")
    push.set_defaults(func=cmd_push)
