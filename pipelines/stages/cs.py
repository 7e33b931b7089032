"""Stages ``cs`` and ``cs_report``: Raj et al. Sec. 4.1-4.3, compressive sensing on CT patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ctrobust.cs.figures import gap_curves, qualitative_rows, rho_curves, singular_value_histograms
from ctrobust.cs.patches import patients_from_folder
from ctrobust.cs.study import run_cs_study
from ctrobust.report.cs import write_cs_report
from ctrobust.results import CSConditioningResult, Metrics
from ctrobust.runfiles import atomic_write_json
from dicom_io.atomic import atomic_write
from pipelines.runner import RunContext

FIGURE_DIR = "figures"


def _input_folder(ctx: RunContext) -> Path:
    """``data.folder``, or the embedded synthetic patients written once into the run folder."""
    if ctx.cfg.data.folder is not None:
        return ctx.cfg.data.folder
    from ctrobust.demo_data import write_demo_folder

    patients = ctx.cfg.cs_conditioning.demo_patients
    folder = ctx.run_dir / f"cs_demo_input_{patients}"
    if not folder.exists():  # written beside and renamed: it exists only when complete
        ctx.log.info("cs: writing %d synthetic patients to %s", patients, folder)
        write_demo_folder(folder, n_patients=patients)
    return folder


def _write_png(path: Path, png: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(png))


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg.cs_conditioning
    patients = patients_from_folder(
        _input_folder(ctx),
        allow_lossy=ctx.cfg.data.allow_lossy,
        slices_per_series=cfg.slices_per_patient,
    )
    study = run_cs_study(
        cfg, patients, seed=ctx.cfg.seed, device=ctx.device, progress=ctx.show_progress,
        log=ctx.log,
    )  # fmt: skip
    typed = CSConditioningResult.model_validate(study.metrics)
    figures = out / FIGURE_DIR
    eps = typed.eps
    svals = {k: v.numpy() for k, v in study.singular_values.items()}
    _write_png(figures / "singular_values.png", singular_value_histograms(svals))
    rho = {k: {s: e.rho_hat for s, e in m.schemes.items()} for k, m in typed.matrices.items()}
    _write_png(figures / "rho_hat.png", rho_curves(eps, rho))
    _write_png(figures / "gap.png", gap_curves(eps, {k: m.gap for k, m in typed.matrices.items()}))
    for matrix, shown in study.shown.items():
        png = qualitative_rows(study.truth, shown, eps, f"{matrix}: worst case at each ε")
        _write_png(figures / f"qualitative_{matrix}.png", png)
    atomic_write_json(out / "metrics.json", {"cs_conditioning": typed.model_dump(mode="json")})
    return {
        name: {
            "condition_number": m.condition_number,
            "gap": m.gap,
            "rho_hat_adversarial": m.schemes["adversarial"].rho_hat,
            "rho_hat_best_other": list(
                np.min([e.rho_hat for s, e in m.schemes.items() if s != "adversarial"], axis=0)
            ),
        }
        for name, m in typed.matrices.items()
    }


def report(ctx: RunContext, out: Path) -> dict[str, Any]:
    section = Metrics.model_validate(ctx.metrics).cs_conditioning
    if section is None:
        raise ValueError("metrics.json has no cs_conditioning section: run the cs stage first")
    html = write_cs_report(ctx.run_dir, section, ctx.stage_dir("cs") / FIGURE_DIR, ctx.cfg.name)
    ctx.log.info("report: %s", html)
    return {"report": str(html)}
