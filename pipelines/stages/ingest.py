"""Stage ``ingest``: read the clinical folder and keep the slices the run uses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrobust.runfiles import atomic_write_json, save_tensors
from dicom_io import ingest_report_to_dict, scan_folder
from pipelines.builders import deidentifier
from pipelines.runner import RunContext


def input_folder(ctx: RunContext) -> Path:
    """The configured folder, or the embedded demo folder written on first use."""
    if ctx.cfg.data.folder is not None:
        return ctx.cfg.data.folder
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


def _pick(count: int, wanted: int | None) -> list[int]:
    """Evenly spaced slice indices (all when ``wanted`` is None or larger than count)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    folder = input_folder(ctx)
    report = scan_folder(folder)
    summary = ingest_report_to_dict(report)
    atomic_write_json(out / "ingest.json", {"folder": str(folder), **summary})
    series = report.series[: ctx.cfg.data.max_series] if ctx.cfg.data.max_series else report.series
    if not series:
        reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in report.skipped[:3])
        raise ValueError(f"data.folder '{folder}': no usable axial CT series ({reasons})")
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
                }
            )
    save_tensors(out / "slices.pt", {"slices": slices})
    deid, _ = deidentifier(ctx)  # log.txt may leave the machine: no source UIDs in it
    for s in series:
        shown = deid.uid(s.key) if deid else s.key
        ctx.log.info(
            "series %s: %d slices, %s", shown, len(s), "; ".join(s.warnings) or "no warnings"
        )
    return {
        "folder": str(folder),
        "series": len(series),
        "slices_used": len(slices),
        "skipped_files": len(report.skipped),
    }
