"""Stage ``simulate``: sinograms at the measured and ground-truth view counts, and FBP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ctrobust.physics import default_n_det
from ctrobust.physics.backend_choice import single_pass_backend
from ctrobust.physics.sparse_projector import release_matrices
from ctrobust.results import DataResult
from ctrobust.runfiles import atomic_write_json, load_tensors, save_tensors
from ctrobust.simulation import SliceSource, simulate, split_indices
from pipelines.builders import deidentifier, measurement_operator
from pipelines.runner import RunContext


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg
    raw = load_tensors(ctx.stage_dir("ingest") / "slices.pt")["slices"]
    sources = [
        SliceSource(
            hu=s["hu"].numpy(),
            pixel_spacing_mm=tuple(s["spacing"]),
            series_key=s["series"],
            patient_key=s["patient"],
            slice_index=s["slice"],
            instance_number=s.get("instance"),
            z_mm=s.get("z"),
            series_description=str(s.get("description", "")),
        )
        for s in raw
    ]
    with tqdm(
        total=len(sources), desc="simulate", disable=not ctx.show_progress, leave=False
    ) as bar:
        # the ground truth is one pass at many views: the matrix only where it fits and
        # pays for its build (enough slices, backend_choice)
        n_det = cfg.physics.n_det or default_n_det(cfg.data.n)
        gt_backend = single_pass_backend(
            cfg.data.n, cfg.physics.gt_views, n_det, len(sources), ctx.device
        )
        ctx.log.info(
            "simulate: %d-view ground truth on the %s backend", cfg.physics.gt_views, gt_backend
        )
        data = simulate(
            sources,
            measurement_operator(cfg, ctx.device),
            measurement_operator(cfg, ctx.device, views=cfg.physics.gt_views, backend=gt_backend),
            i0=cfg.physics.i0,
            mu_water_per_mm=cfg.physics.mu_water_per_mm,
            seed=cfg.seed,
            progress=bar.update,
        )
    release_matrices()  # the ground truth's matrix (7.6 GB at 512 x 1000) goes now
    split = split_indices(data.meta, cfg.data.test_fraction, cfg.data.val_fraction)
    # De-identified runs carry pseudonyms from here on (the split above does not depend on
    # them): every label, figure, log line and report derives from these keys, and only
    # cache/ingest keeps the source identifiers.
    deid, _ = deidentifier(ctx)
    if deid is not None:
        for m in data.meta:
            m["patient"], m["series"] = (
                deid.pseudonym(str(m["patient"])),
                deid.uid(str(m["series"])),
            )
    save_tensors(out / "data.pt", {"slices": data.to_dict(), "split": split})
    patients = {
        name: sorted({str(data.meta[i]["patient"]) for i in idx}) for name, idx in split.items()
    }
    summary = DataResult(
        n=cfg.data.n,
        views=cfg.physics.views,
        gt_views=cfg.physics.gt_views,
        n_det=data.y.shape[-1],
        i0=cfg.physics.i0,
        pixel_mm=[float(data.pixel_mm.min()), float(data.pixel_mm.max())],
        slices={name: len(idx) for name, idx in split.items()},
        patients=patients,
        split_by="patient" if len({str(m["patient"]) for m in data.meta}) > 1 else "slice block",
    ).model_dump(mode="json")
    atomic_write_json(out / "metrics.json", {"data": summary})
    return summary
