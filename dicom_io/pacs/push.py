"""Push a run's exported DICOM series to a node: per-instance status, retries of transient
failures, and a one-line `PacsError` naming the series when the node rejects instances."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread

from dicom_io.pacs.node import Node, PacsError, TransientPacsError

#: Status codes that are not failures (success, and the C-STORE warnings).
STORED = (0x0000, 0xB000, 0xB006, 0xB007)
#: C-STORE "out of resources": worth a retry.
TRANSIENT = range(0xA700, 0xA800)


@dataclass
class InstanceStatus:
    """How the node answered one file."""

    path: str
    series: str
    sop_uid: str
    status: int
    text: str
    attempts: int

    @property
    def stored(self) -> bool:
        return self.status in STORED


@dataclass
class PushResult:
    """Every instance's final status, by series folder (``<series>/<kind>``)."""

    instances: list[InstanceStatus] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(i.stored for i in self.instances)

    def to_dict(self) -> dict:
        return {
            "stored": self.stored,
            "instances": [
                {**vars(i), "status": f"0x{i.status:04X}", "stored": i.stored}
                for i in self.instances
            ],
        }


def run_dicom_files(run_dir: Path, kinds: list[str] | None = None) -> dict[str, list[Path]]:
    """The exported series of a run folder (``dicom/<series>/<kind>/*.dcm``), by
    ``<series>/<kind>``; ``kinds`` are shell patterns matched against the kind, e.g.
    ``'*attacked*'``."""
    root = Path(run_dir) / "dicom"
    if not root.is_dir():
        raise FileNotFoundError(f"push: '{root}' does not exist; the run exported no DICOM")
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        if kinds and not any(fnmatch.fnmatchcase(folder.name, k) for k in kinds):
            continue
        files = sorted(folder.glob("*.dcm"))
        if files:
            found[f"{folder.parent.name}/{folder.name}"] = files
    if not found:
        wanted = f" of kinds {', '.join(kinds)}" if kinds else ""
        raise FileNotFoundError(f"push: no exported DICOM series{wanted} under '{root}'")
    return found


def _backend_store(node: Node) -> Callable:
    if node.is_dicomweb:
        from dicom_io.pacs.dicomweb import store
    else:
        from dicom_io.pacs.dimse import store  # type: ignore[assignment]
    return store


def push_files(
    node: Node,
    series: dict[str, list[Path]],
    report: Callable[[InstanceStatus], None] | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> PushResult:
    """Send every file; retry transient failures up to ``retries`` times; raise on rejections."""
    store = _backend_store(node)
    result = PushResult()
    for name, paths in series.items():
        pending = []
        for path in paths:
            ds = dcmread(path)
            pending.append((str(path), str(ds.SOPInstanceUID), ds))
        attempt = 0
        while pending:
            attempt += 1
            answered = 0
            retry = []
            try:
                for (path, uid, ds), (code, text) in zip(
                    pending, store(node, pending), strict=True
                ):
                    answered += 1
                    status = InstanceStatus(path, name, uid, code, text, attempt)
                    if code in TRANSIENT and attempt <= retries:
                        retry.append((path, uid, ds))
                        continue
                    result.instances.append(status)
                    if report is not None:
                        report(status)
            except TransientPacsError as error:
                if attempt > retries:
                    raise PacsError(f"{error} (series {name})") from None
            except PacsError as error:
                raise PacsError(f"{error} (series {name})") from None
            pending = retry + pending[answered:]
            if pending:
                time.sleep(backoff * attempt)
        failed = [i for i in result.instances if i.series == name and not i.stored]
        if failed:
            total = len(paths)
            raise PacsError(
                f"node {node}: rejected {len(failed)} of {total} instances of series {name} "
                f"(first: status 0x{failed[0].status:04X} {failed[0].text}); check that the "
                "node accepts CT Image Storage from this AE title and has space"
            )
    return result
