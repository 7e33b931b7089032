"""Stage ``simulate``: sinograms at the measured and ground-truth view counts, and FBP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ctrobust.runfiles import atomic_write_json, load_tensors, save_tensors
from ctrobust.simulation import SimulatedSlices, SliceSource, simulate, split_indices
from pipelines.runner import RunContext


def load_simulated(ctx: RunContext) -> tuple[SimulatedSlices, dict[str, list[int]]]:
    """The simulated slices and the train/val/test split of a finished ``simulate`` stage."""
    state = load_tensors(ctx.stage_dir("simulate") / "data.pt")
    return SimulatedSlices.from_dict(state["slices"]), state["split"]


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
        )
        for s in raw
    ]
    with tqdm(
        total=len(sources), desc="simulate", disable=not ctx.show_progress, leave=False
    ) as bar:
        data = simulate(
            sources,
            cfg.data.n,
            cfg.physics.views,
            cfg.physics.gt_views,
            n_det=cfg.physics.n_det,
            window=cfg.physics.filter,
            i0=cfg.physics.i0,
            mu_water_per_mm=cfg.physics.mu_water_per_mm,
            seed=cfg.seed,
            device=ctx.device,
            progress=bar.update,
        )
    split = split_indices(data.meta, cfg.data.test_fraction, cfg.data.val_fraction)
    save_tensors(out / "data.pt", {"slices": data.to_dict(), "split": split})
    patients = {
        name: sorted({str(data.meta[i]["patient"]) for i in idx}) for name, idx in split.items()
    }
    summary = {
        "n": cfg.data.n,
        "views": cfg.physics.views,
        "gt_views": cfg.physics.gt_views,
        "n_det": data.y.shape[-1],
        "i0": cfg.physics.i0,
        "pixel_mm": [float(data.pixel_mm.min()), float(data.pixel_mm.max())],
        "slices": {name: len(idx) for name, idx in split.items()},
        "patients": patients,
        "split_by": "patient" if len({str(m["patient"]) for m in data.meta}) > 1 else "slice block",
    }
    atomic_write_json(out / "metrics.json", {"data": summary})
    return summary
