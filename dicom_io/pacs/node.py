"""Where a DICOM node is and how to reach it: DIMSE (host, port, AE titles, optional TLS)
or DICOMweb (base URL, optional basic-auth credentials read from the environment or a file)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Receives (SOPInstanceUID, SeriesInstanceUID, the instance as a DICOM file's bytes).
Receiver = Callable[[str, str, bytes], None]


class PacsError(RuntimeError):
    """A failure talking to a node: one line naming the node and what to check."""


class TransientPacsError(PacsError):
    """A failure worth a retry: the association was lost or the node is busy."""


@dataclass(frozen=True)
class Node:
    """A DICOM node. ``dicomweb`` set means DICOMweb; else host, port and called_aet (DIMSE).

    ``move_port`` set means retrieve with C-MOVE to a storage SCP that listens on that port
    for the duration of the pull (the node must know ``calling_aet`` at this host and port);
    unset means C-GET on the query association.
    """

    host: str | None = None
    port: int | None = None
    called_aet: str | None = None
    calling_aet: str = "CTROBUST"
    move_port: int | None = None
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    dicomweb: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log or a traceback
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.dicomweb is None and not (self.host and self.port and self.called_aet):
            raise ValueError("a DICOM node needs host, port and called AE title, or a DICOMweb URL")

    @property
    def is_dicomweb(self) -> bool:
        return self.dicomweb is not None

    def __str__(self) -> str:
        if self.dicomweb is not None:
            return f"DICOMweb {self.dicomweb}"
        return f"{self.host}:{self.port} {self.called_aet}"

    def ssl_context(self, server: bool = False) -> ssl.SSLContext | None:
        """The TLS context of DIMSE associations (None without TLS)."""
        if not self.tls:
            return None
        purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
        context = ssl.create_default_context(
            purpose, cafile=str(self.tls_ca_file) if self.tls_ca_file else None
        )
        if self.tls_cert_file is not None:
            context.load_cert_chain(
                str(self.tls_cert_file), str(self.tls_key_file) if self.tls_key_file else None
            )
        elif server:
            raise ValueError("TLS with C-MOVE needs a certificate (tls_cert_file) for the SCP")
        return context


def read_secret(env: str | None, file: Path | None, what: str) -> str | None:
    """A secret from the environment variable ``env`` or the first line of ``file``.

    Configs and command lines name where the secret is, never the secret itself.
    """
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as error:
            raise ValueError(f"{what}: cannot read '{file}': {error.strerror}") from None
        return lines[0].strip() if lines else ""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{what}: environment variable {env} is not set")
        return value
    return None
