"""Pull a study's series into a folder that ``ctrobust ingest`` reads, atomically and resumably.

Instances arrive in ``.<DEST>.partial/`` beside the destination, one file per
SOPInstanceUID (``<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, each written atomically). Only
when every instance the node lists is there does the folder get its manifest and the name
DEST, so a half-finished pull is never taken for a complete one. Re-running resumes: the
instances already there are not asked for again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from dicom_io.atomic import atomic_write, write_text_atomic
from dicom_io.pacs.node import Node, PacsError
from dicom_io.pacs.query import SeriesMatch

#: Written last into a complete pull: what was pulled from where.
MANIFEST = "ctrobust_pull.json"


@dataclass
class PullResult:
    """What a pull left in ``folder``: instances per series, and how many came this time."""

    folder: Path
    series: dict[str, int] = field(default_factory=dict)
    retrieved: int = 0
    already_there: int = 0


def _backend(node: Node) -> ModuleType:
    if node.is_dicomweb:
        from dicom_io.pacs import dicomweb

        return dicomweb
    from dicom_io.pacs import dimse

    return dimse


def is_ctrobust_output(series: SeriesMatch) -> bool:
    """A derived series ctrobust pushed (its descriptions all start with 'ctrobust'): not
    pulled unless asked for by UID, so that a run never trains on its own outputs."""
    return series.description.lower().startswith("ctrobust")


def _wanted_series(backend: ModuleType, node: Node, study_uid: str, asked: list[str]) -> list[str]:
    found = backend.series(node, study_uid)
    if not found:
        raise PacsError(
            f"node {node}: study {study_uid} not found; check the UID with `ctrobust pacs find`"
        )
    if asked:
        known = {s.series_uid for s in found}
        for uid in asked:
            if uid not in known:
                raise PacsError(
                    f"node {node}: series {uid} not found in study {study_uid}; "
                    "check the UID with `ctrobust pacs find --study-uid`"
                )
        return asked
    ct = [s.series_uid for s in found if s.modality == "CT" and not is_ctrobust_output(s)]
    if not ct:
        raise PacsError(f"node {node}: study {study_uid} holds no CT series but ctrobust's own")
    return ct


def _present(folder: Path) -> dict[str, set[str]]:
    """SOPInstanceUIDs already in a staging folder, per series (leftover temporaries removed)."""
    present: dict[str, set[str]] = {}
    if not folder.is_dir():
        return present
    for path in folder.glob("*/*"):
        if path.suffix == ".dcm":
            present.setdefault(path.parent.name, set()).add(path.stem)
        elif path.name.endswith(".tmp"):
            path.unlink()
    return present


def _staging(dest: Path) -> Path:
    """The partial folder beside ``dest``; an earlier complete pull there is resumed from."""
    staging = dest.with_name(f".{dest.name}.partial")
    if dest.exists():
        if not (dest / MANIFEST).is_file():
            raise FileExistsError(
                f"pull: '{dest}' exists and is not a folder written by `ctrobust pacs pull`; "
                "choose a new folder"
            )
        if staging.exists():
            raise FileExistsError(f"pull: both '{dest}' and '{staging}' exist; remove one")
        os.replace(dest, staging)
        (staging / MANIFEST).unlink()
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def pull_study(
    node: Node,
    study_uid: str,
    dest: Path,
    series_uids: list[str] | None = None,
    progress: bool = True,
) -> PullResult:
    """Retrieve the study's CT series (or ``series_uids``) into ``dest``; raise on a gap.

    Without ``series_uids``, ctrobust's own derived series in the study are left out.
    """
    backend = _backend(node)
    wanted = _wanted_series(backend, node, study_uid, list(series_uids or []))
    expected = {uid: set(backend.instances(node, study_uid, uid)) for uid in wanted}
    dest = Path(dest)
    staging = _staging(dest)
    present = _present(staging)
    result = PullResult(folder=dest)
    result.already_there = sum(len(present.get(s, set()) & e) for s, e in expected.items())
    missing_total = sum(len(e) for e in expected.values()) - result.already_there
    bar = tqdm(total=missing_total, desc="pull", unit="inst", disable=not progress, leave=False)

    def receive(sop_uid: str, series_uid: str, data: bytes) -> None:
        path = staging / series_uid / f"{sop_uid}.dcm"
        if not path.exists():
            atomic_write(path, lambda fh: fh.write(data))
            result.retrieved += 1
            bar.update()

    with bar:
        for series_uid, sops in expected.items():
            have = present.get(series_uid, set())
            missing = sorted(sops - have)
            if missing:
                backend.retrieve(node, study_uid, series_uid, missing if have else None, receive)
    present = _present(staging)
    for series_uid, sops in expected.items():
        got = len(sops & present.get(series_uid, set()))
        if got < len(sops):
            raise PacsError(
                f"node {node}: partial retrieve of series {series_uid}: {got} of {len(sops)} "
                f"instances; re-run the same command to resume (kept in {staging}), and check "
                "the node's log"
            )
        result.series[series_uid] = got
    manifest = {
        "node": str(node),
        "study_uid": study_uid,
        "series": result.series,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=2))
    os.replace(staging, dest)
    return result
