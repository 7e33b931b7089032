"""DICOM nodes in and out: query (C-FIND / QIDO-RS), pull (C-GET, C-MOVE / WADO-RS), push
(C-STORE / STOW-RS).

`Node` says where to talk to (and how: DIMSE or DICOMweb, TLS, credentials); `find_studies`
lists studies and their series, `pull_study` fills a folder that ``ctrobust ingest`` reads,
`push_files` sends DICOM files. Every failure the user can act on is a one-line `PacsError`
that names the node.
"""

from dicom_io.pacs.node import Node, PacsError, read_secret
from dicom_io.pacs.pull import PullResult, pull_study
from dicom_io.pacs.push import PushResult, push_files, run_dicom_files
from dicom_io.pacs.query import SeriesMatch, StudyMatch, find_studies

__all__ = [
    "Node",
    "PacsError",
    "PullResult",
    "PushResult",
    "SeriesMatch",
    "StudyMatch",
    "find_studies",
    "pull_study",
    "push_files",
    "read_secret",
    "run_dicom_files",
]
