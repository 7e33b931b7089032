"""Stage ``ingest``: read the clinical folder and keep the slices the run uses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrobust.config import RunConfig
from ctrobust.runfiles import atomic_write_json, save_tensors
from dicom_io import (
    IngestReport,
    folder_digest,
    format_ingest_report,
    ingest_report_to_dict,
    scan_folder,
    series_problems,
    source_to_dict,
)
from pipelines.builders import deidentifier
from pipelines.pacs_nodes import PULLED_FOLDER
from pipelines.runner import RunContext

#: A run needs a slice to train on and one to test on.
MIN_SLICES = 2


def input_folder(ctx: RunContext) -> Path:
    """The configured folder, the one stage pacs_pull filled, or the embedded demo folder
    written on first use."""
    if ctx.cfg.data.folder is not None:
        return ctx.cfg.data.folder
    if ctx.cfg.data.pacs is not None:
        return ctx.run_dir / PULLED_FOLDER
    from ctrobust.demo_data import write_demo_folder

    folder = ctx.run_dir / "demo_input"
    marker = ctx.run_dir / "demo_input.complete"
    if not marker.exists():
        ctx.log.info("writing the embedded synthetic demo folder to %s", folder)
        if folder.exists():
            shutil.rmtree(folder)
        write_demo_folder(folder)
        marker.write_text("the synthetic demo folder beside this file is complete\n")
    return folder


def input_digest(cfg: RunConfig) -> str:
    """Fingerprint of the configured folder's files (the demo folder is fixed by the code, a
    pulled one by stage pacs_pull's fingerprint upstream)."""
    if cfg.data.pacs is not None:
        return "pulled by stage pacs_pull"
    if cfg.data.folder is None:
        return "embedded synthetic demo folder"
    return folder_digest(cfg.data.folder)


def _no_series_error(folder: Path, report: IngestReport) -> ValueError:
    problems = "; ".join(series_problems(report)) or "the folder holds no files"
    return ValueError(f"data.folder '{folder}': no usable axial CT series ({problems})")


def _pick(count: int, wanted: int | None) -> list[int]:
    """Evenly spaced slice indices (all when ``wanted`` is None or larger than count)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    folder = input_folder(ctx)
    report = scan_folder(folder, allow_lossy=ctx.cfg.data.allow_lossy)
    summary = ingest_report_to_dict(report)
    atomic_write_json(out / "ingest.json", {"folder": str(folder), **summary})
    series = report.series[: ctx.cfg.data.max_series] if ctx.cfg.data.max_series else report.series
    if not series:
        raise _no_series_error(folder, report)
    atomic_write_json(out / "sources.json", [source_to_dict(s) for s in series])
    slices = []
    for s in series:
        patient = s.patient_id or s.study_uid
        for index in _pick(len(s), ctx.cfg.data.slices_per_series):
            slices.append(
                {
                    "hu": torch.from_numpy(s.hu[index].astype(np.float32)),
                    "spacing": [float(s.spacing[1]), float(s.spacing[2])],
                    "series": s.key,
                    "patient": patient,
                    "slice": index,
                    "instance": s.instance_numbers[index] if s.instance_numbers else None,
                    "z": round(float(s.positions[index][2]), 3),
                    "description": s.series_description,
                }
            )
    if len(slices) < MIN_SLICES:
        found = ", ".join(f"series {s.key}: {len(s)} slice(s)" for s in series)
        raise ValueError(
            f"data.folder '{folder}': only {len(slices)} usable slice(s) ({found}); a run needs "
            f"at least {MIN_SLICES} (one to train on, one to test on)"
        )
    save_tensors(out / "slices.pt", {"slices": slices})
    deid, _ = deidentifier(ctx)
    if deid is None:
        for line in format_ingest_report(report).splitlines():
            ctx.log.info("ingest: %s", line)
    else:  # log.txt may leave the machine: the per-series lines name source UIDs
        ctx.log.info(
            "ingest: %d series, %d slices kept, %d files skipped (per series in "
            "cache/ingest/ingest.json, which is not de-identified)",
            len(series),
            len(slices),
            len(report.skipped),
        )
    return {
        "folder": str(folder),
        "series": len(series),
        "slices_used": len(slices),
        "skipped_files": len(report.skipped),
    }
