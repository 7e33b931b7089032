"""DICOM nodes from config sections (data.pacs, export.pacs), with their secrets read where
the config says, and the run-folder name a pull goes to."""

from __future__ import annotations

from ctrobust.config import PacsNodeConfig
from dicom_io.pacs import Node, read_secret

#: RUN_DIR/<this>: the folder stage pacs_pull fills and stage ingest then reads; under cache/,
#: which keeps what was read and stays on the machine (nothing outside it names the patient).
PULLED_FOLDER = "cache/pacs_input/study"


def node_from_config(section: PacsNodeConfig, key: str) -> Node:
    """The node a config section describes; ``key`` (e.g. data.pacs) names it in errors."""
    password = read_secret(section.password_env, section.password_file, f"{key}.password")
    return Node(
        host=section.host,
        port=section.port,
        called_aet=section.called_aet,
        calling_aet=section.calling_aet,
        move_port=section.move_port,
        tls=section.tls,
        tls_ca_file=section.tls_ca_file,
        tls_cert_file=section.tls_cert_file,
        tls_key_file=section.tls_key_file,
        dicomweb=section.dicomweb,
        username=section.username,
        password=password,
        timeout=section.timeout,
    )
