"""Stage ``export``: derived DICOM and NIfTI series of clean and attacked reconstructions.

For each source series with attacked test slices and each trained scheme, the
stage writes ``dicom/<series>/<kind>/`` and ``nifti/<series>/<kind>.nii.gz`` with
kinds ``<scheme>_clean``, ``<scheme>_attacked_eps<eps>`` and
``<scheme>_perturbation_eps<eps>`` (the image-domain effect f(y + delta) - f(y) in
HU). Every series is DERIVED\\SECONDARY with new UIDs and descriptions that say
what it is; de-identification follows the config.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import ctrobust
from ctrobust.physics.units import relative_to_hu
from ctrobust.reconstructors import MethodKind
from ctrobust.results import ExportResult, MethodInfo, Metrics
from ctrobust.runfiles import atomic_write_json, load_tensors
from dicom_io import (
    derived_text,
    source_from_dict,
    write_nifti,
    write_series,
)
from dicom_io.equipment import Contribution
from pipelines.builders import deidentifier, load_simulated
from pipelines.runner import RunContext


def _folder_name(series_key: str, ordinal: int) -> str:
    """Short, filesystem-safe series folder name: ordinal plus the (exported) UID's last digits."""
    tail = re.sub(r"[^0-9A-Za-z]+", "", series_key)[-8:]
    return f"s{ordinal:02d}_{tail}"


def _provenance(method: str, info: MethodInfo) -> tuple[str, list[Contribution]]:
    """What DerivationDescription adds about the reconstructor, and the contributing software:
    ctrobust (simulation, attack, export) and the reconstructor with its weights' SHA-256."""
    weights = f"weights {Path(info.weights).name} SHA-256 {info.sha256}" if info.sha256 else ""
    text = f" Reconstructor {method}: {info.what}" + (f"; {weights}." if weights else ".")
    maker = "unknown (external model)" if info.kind == MethodKind.EXTERNAL else "ctrobust"
    contributions = [
        Contribution(
            "ctrobust",
            "ctrobust",
            "simulated the sinogram from the source slice, perturbed it and exported the images",
            software_version=ctrobust.__version__,
        ),
        Contribution(
            maker,
            method,
            f"reconstructed the images: {info.what}" + (f"; {weights}" if weights else ""),
            serial_number=info.sha256,
        ),
    ]
    return text, contributions


def _volumes(
    ctx: RunContext, scheme: str, rows: list[int]
) -> dict[str, tuple[np.ndarray, float | None]]:
    """HU volumes of one scheme for the attacked test slices at ``rows``: kind -> (volume, eps)."""
    recons = load_tensors(ctx.stage_dir("evaluate") / "test_recons.pt")
    clean = recons[scheme][rows]
    volumes = {f"{scheme}_clean": (relative_to_hu(clean[:, 0]).numpy(), None)}
    attack_dir = ctx.stage_dir("attack")
    if ctx.cfg.attack.enabled and (attack_dir / "results.pt").exists():
        results = load_tensors(attack_dir / "results.pt")
        attacked = results["models"][scheme]["attacked"]
        for k, eps in enumerate(results["eps"]):
            if eps == 0:
                continue
            image = attacked[k][rows][:, 0]
            volumes[f"{scheme}_attacked_eps{eps:g}"] = (relative_to_hu(image).numpy(), eps)
            volumes[f"{scheme}_perturbation_eps{eps:g}"] = (
                (1000.0 * (image - clean[:, 0])).numpy(),
                eps,
            )
    return volumes


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg.export
    # the series as ingested (files, positions, UIDs), never a re-scan of a folder that may
    # have changed since
    records = json.loads((ctx.stage_dir("ingest") / "sources.json").read_text())
    ingested = [source_from_dict(r) for r in records]
    data, split = load_simulated(ctx)
    test = data.subset(split["test"])
    attack_file = ctx.stage_dir("attack") / "results.pt"
    exported_rows = list(range(len(test)))
    if ctx.cfg.attack.enabled and attack_file.exists():
        position = {row: i for i, row in enumerate(split["test"])}
        exported_rows = [position[r] for r in load_tensors(attack_file)["rows"]]
    by_series: dict[str, list[int]] = defaultdict(list)
    for row in exported_rows:
        by_series[str(test.meta[row]["series"])].append(row)

    described = Metrics.model_validate(ctx.metrics)
    networks = [m for m in described.methods or {} if described.is_network(m)]
    deid, deid_note = deidentifier(ctx)
    # slice metadata carries the de-identified series UIDs when de-identification is on
    sources = {(deid.uid(s.key) if deid else s.key): s for s in ingested}
    dicom_root, nifti_root = ctx.run_dir / "dicom", ctx.run_dir / "nifti"
    exported: dict[str, Any] = {}
    series_number = 9001
    for ordinal, (key, rows) in enumerate(sorted(by_series.items()), start=1):
        source = sources[key]
        name = _folder_name(key, ordinal)
        slice_indices = [int(test.meta[r]["slice"]) for r in rows]
        grid = source.grid.select(slice_indices).resampled(ctx.cfg.data.n, ctx.cfg.data.n)
        kinds = []
        for method in networks:
            provenance, contributions = _provenance(method, described.methods[method])
            for kind, (volume, eps) in _volumes(ctx, method, rows).items():
                base_kind = kind.removeprefix(f"{method}_")
                description, derivation = derived_text(base_kind, method, eps)
                derivation += provenance
                if cfg.dicom:
                    write_series(
                        volume,
                        source,
                        dicom_root / name / kind,
                        base_kind,
                        description,
                        derivation,
                        eps=eps,
                        slice_indices=slice_indices,
                        deidentify=deid,
                        series_number=series_number,
                        overwrite=True,
                        contributions=contributions,
                    )
                    series_number += 1
                if cfg.nifti:
                    write_nifti(volume, grid, nifti_root / name / f"{kind}.nii.gz")
                kinds.append(kind)
        exported[name] = {"source_series": key, "slices": slice_indices, "kinds": kinds}
    metrics = ExportResult(
        series=exported,
        dicom=str(dicom_root) if cfg.dicom else None,
        nifti=str(nifti_root) if cfg.nifti else None,
        deidentification=deid_note,
    )
    atomic_write_json(out / "metrics.json", {"export": metrics.model_dump(mode="json")})
    return {"series": len(exported), "deidentification": deid_note}
