"""PACS round trip of a whole series against a temporary Orthanc: instances and wall time of
each step (upload, find, pull, push) over DIMSE and over DICOMweb.

The series is uploaded with C-STORE, found (C-FIND, QIDO-RS), pulled whole (C-GET, C-MOVE,
WADO-RS) and pulled again (nothing missing: the resume check alone); a tiny ``ctrobust run``
on the pulled folder exports derived series, which are pushed (C-STORE, STOW-RS); finally the
series is uploaded again over STOW-RS into an emptied Orthanc. Steps run in-process through
the ``ctrobust`` CLI entry point, so each time is what the command costs after start-up.

    .venv/bin/python benchmarks/bench_pacs.py [--series FOLDER]

Needs the Debian packages orthanc and orthanc-dicomweb.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CTROBUST_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))

from orthanc_fixture import Orthanc, running_orthanc  # noqa: E402

from dicom_io.pacs import Node, push_files  # noqa: E402
from pipelines.cli import main as ctrobust  # noqa: E402

RUN_CONFIG = """
name: bench-pacs
data: {n: 32, slices_per_series: 6, test_fraction: 0.34}
physics: {views: 24, gt_views: 120, i0: 1.0e5}
model: {channels: [4, 8], num_res_units: 0}
train: {epochs: 1, batch_size: 4}
attack: {eps: [0.05], n_iter: 2, random_draws: 1, max_slices: 2, image_domain: {enabled: false}}
instability: {enabled: false}
report: {enabled: false}
export: {nifti: false}
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--series",
        type=Path,
        default=SHARED / "abdomen_ct_pancreas",
        help="folder of one DICOM series (default: the abdominal series of "
        "$CTROBUST_SHARED_DATA, else ../shared/data)",
    )
    return p.parse_args()


@contextlib.contextmanager
def timed(rows: list[tuple[str, int, float]], step: str, count: Callable[[], int]) -> Iterator:
    start = time.perf_counter()
    yield
    rows.append((step, count(), time.perf_counter() - start))


def cli(*argv: str) -> str:
    """Run a ctrobust command in-process; its stdout (it must succeed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ctrobust(list(argv))
    if code != 0:
        raise SystemExit(f"ctrobust {' '.join(argv)} exited with {code}")
    return out.getvalue()


def dcm_count(folder: Path) -> Callable[[], int]:
    return lambda: len(list(folder.glob("*/*.dcm")))


def steps(orthanc: Orthanc, files: list[Path], work: Path) -> list[tuple[str, int, float]]:
    rows: list[tuple[str, int, float]] = []
    dimse = ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--called-aet", orthanc.aet]
    os.environ["BENCH_ORTHANC_PASSWORD"] = orthanc.password
    web = ["--dicomweb", orthanc.dicomweb, "--username", orthanc.user]
    web += ["--password-env", "BENCH_ORTHANC_PASSWORD"]
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, called_aet=orthanc.aet)
    with timed(rows, "upload, C-STORE", lambda: len(files)):
        push_files(node, {"source": files})
    study = orthanc.get("/studies")[0]  # type: ignore[index]
    study_uid = orthanc.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]  # type: ignore[index]
    with timed(rows, "find, C-FIND", lambda: 1):
        cli("pacs", "find", *dimse, "--study-uid", study_uid)
    pulls = {
        "pull, C-GET": (work / "get", dimse),
        "pull, C-MOVE": (work / "move", [*dimse, "--move-port", str(orthanc.move_port)]),
        "pull, WADO-RS": (work / "wado", web),
    }
    for step, (dest, flags) in pulls.items():
        with timed(rows, step, dcm_count(dest)):
            cli("pacs", "pull", *flags, "--study-uid", study_uid, str(dest))
    with timed(rows, "pull again, C-GET (all there)", lambda: 0):
        cli("pacs", "pull", *dimse, "--study-uid", study_uid, str(work / "get"))
    with timed(rows, "find, QIDO-RS", lambda: 1):
        cli("pacs", "find", *web, "--study-uid", study_uid)
    config = work / "run.yaml"
    config.write_text(RUN_CONFIG)
    run_dir = work / "run"
    cli(
        "run", str(config), "--out", str(run_dir), "--quiet", "--set", f"data.folder={work / 'get'}"
    )
    exported = list(run_dir.glob("dicom/*/*/*.dcm"))
    with timed(rows, "push run export, C-STORE", lambda: len(exported)):
        cli("pacs", "push", str(run_dir), *dimse, "--quiet")
    with timed(rows, "push run export, STOW-RS", lambda: len(exported)):
        cli("pacs", "push", str(run_dir), *web, "--quiet")
    orthanc.delete_all()
    with timed(rows, "upload, STOW-RS", lambda: len(files)):
        web_node = Node(dicomweb=orthanc.dicomweb, username=orthanc.user, password=orthanc.password)
        push_files(web_node, {"source": files})
    return rows


def main() -> int:
    args = parse_args()
    files = sorted(args.series.glob("*.dcm"))
    if not files:
        raise SystemExit(f"no .dcm files in {args.series}")
    size = sum(f.stat().st_size for f in files) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "orthanc").mkdir()
        with running_orthanc(work / "orthanc") as orthanc:
            rows = steps(orthanc, files, work)
    print(f"series {args.series}: {len(files)} instances, {size:.0f} MB; Orthanc on 127.0.0.1")
    print(f"{'step':34s} {'instances':>9s} {'seconds':>8s}")
    for step, count, seconds in rows:
        print(f"{step:34s} {count:9d} {seconds:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
