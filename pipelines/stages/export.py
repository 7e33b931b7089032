"""Stage ``export``: derived DICOM and NIfTI series of clean and attacked reconstructions.

For each source series with attacked test slices the stage writes
``dicom/<series>/<kind>/`` and ``nifti/<series>/<kind>.nii.gz`` for side-by-side reading:
``ground_truth`` (the FBP of many noise-free views) and, for every reconstructor (FBP of
the measured views, each network), ``<method>_clean``, ``<method>_attacked_eps<eps>`` and
``<method>_perturbation_eps<eps>`` (the image-domain effect f(y + delta) - f(y) in HU) for
each eps of ``export.eps`` (default: all of attack.eps). Every series is
DERIVED\\SECONDARY with new UIDs, descriptions that say what it is, the soft-tissue,
lung and bone window presets, and a new research study unless ``export.same_study``;
de-identification follows the config.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import ctrobust
from ctrobust.physics.units import relative_to_hu
from ctrobust.reconstructors import MethodKind
from ctrobust.results import ExportResult, MethodInfo, Metrics
from ctrobust.runfiles import atomic_write_json, load_tensors
from dicom_io import (
    ResearchStudy,
    derived_text,
    source_from_dict,
    write_nifti,
    write_series,
)
from dicom_io.equipment import Contribution
from dicom_io.uids import hashed_uid
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
        _ctrobust_contribution(),
        Contribution(
            maker,
            method,
            f"reconstructed the images: {info.what}" + (f"; {weights}" if weights else ""),
            serial_number=info.sha256,
        ),
    ]
    return text, contributions


def _ctrobust_contribution() -> Contribution:
    return Contribution(
        "ctrobust",
        "ctrobust",
        "simulated the sinogram from the source slice, perturbed it and exported the images",
        software_version=ctrobust.__version__,
    )


def _volumes(
    ctx: RunContext,
    method: str,
    positions: list[int],
    attack_rows: list[int],
    exported_eps: set[float] | None,
) -> dict[str, tuple[np.ndarray, float | None]]:
    """HU volumes of one method: kind -> (volume, eps); the clean images at the test
    ``positions``, the attacked ones at the same slices' ``attack_rows`` of results.pt."""
    recons = load_tensors(ctx.stage_dir("evaluate") / "test_recons.pt")
    clean = recons[method][positions]
    volumes = {f"{method}_clean": (relative_to_hu(clean[:, 0]).numpy(), None)}
    attack_dir = ctx.stage_dir("attack")
    if not (ctx.cfg.attack.enabled and (attack_dir / "results.pt").exists()):
        return volumes
    results = load_tensors(attack_dir / "results.pt")
    if method not in results["models"]:
        return volumes
    attacked = results["models"][method]["attacked"]
    for k, eps in enumerate(results["eps"]):
        if eps == 0 or (exported_eps is not None and eps not in exported_eps):
            continue
        image = attacked[k][attack_rows][:, 0]
        volumes[f"{method}_attacked_eps{eps:g}"] = (relative_to_hu(image).numpy(), eps)
        volumes[f"{method}_perturbation_eps{eps:g}"] = (
            (1000.0 * (image - clean[:, 0])).numpy(),
            eps,
        )
    return volumes


def _prune(dicom_root: Path, nifti_root: Path, exported: dict[str, Any]) -> None:
    """Remove series an earlier export of this run wrote and this one did not (e.g. an eps
    dropped from export.eps), so dicom/ and nifti/ hold exactly what metrics.json lists."""
    for root, suffix in ((dicom_root, ""), (nifti_root, ".nii.gz")):
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            if folder.name not in exported:
                _remove(folder)
                continue
            keep = {kind + suffix for kind in exported[folder.name]["kinds"]}
            for entry in folder.iterdir():
                if entry.name not in keep:
                    _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def research_study(ctx: RunContext, source_study: str, description: str) -> ResearchStudy | None:
    """The new study the export files its series in (None with ``export.same_study``).

    Its UID is derived from the source study and the run folder, so re-exporting a run
    keeps one study while two runs never share one.
    """
    if ctx.cfg.export.same_study:
        return None
    uid = hashed_uid("ctrobust-research-study", source_study, str(ctx.run_dir.resolve()))
    what = f" of {description}" if description else ""
    return ResearchStudy(uid, f"ctrobust research study{what}")


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
    reconstructed = load_tensors(ctx.stage_dir("evaluate") / "test_recons.pt")
    methods = [m for m in described.methods or {} if m in reconstructed]
    exported_eps = set(cfg.eps) if cfg.eps is not None else None
    gt_name = f"FBP-{ctx.cfg.physics.gt_views}"
    deid, deid_note = deidentifier(ctx)
    # slice metadata carries the de-identified series UIDs when de-identification is on
    sources = {(deid.uid(s.key) if deid else s.key): s for s in ingested}
    dicom_root, nifti_root = ctx.run_dir / "dicom", ctx.run_dir / "nifti"
    exported: dict[str, Any] = {}
    series_number = 9001
    groups = sorted(by_series.items())
    bar = tqdm(groups, desc="export", disable=not ctx.show_progress, leave=False)
    for ordinal, (key, rows) in enumerate(bar, start=1):
        source = sources[key]
        study = research_study(ctx, source.study_uid, source.series_description)
        name = _folder_name(key, ordinal)
        slice_indices = [int(test.meta[r]["slice"]) for r in rows]
        grid = source.grid.select(slice_indices).resampled(ctx.cfg.data.n, ctx.cfg.data.n)
        truth = relative_to_hu(test.x_gt[rows][:, 0]).numpy()
        series: list[tuple[str, str, np.ndarray, float | None, str, list[Contribution]]] = [
            ("ground_truth", "ground_truth", truth, None, "", [_ctrobust_contribution()])
        ]
        for method in methods:
            provenance, contributions = _provenance(method, described.methods[method])
            attack_rows = [exported_rows.index(r) for r in rows]
            volumes = _volumes(ctx, method, rows, attack_rows, exported_eps)
            for kind, (volume, eps) in volumes.items():
                series.append((kind, method, volume, eps, provenance, contributions))
        kinds = []
        for kind, method, volume, eps, provenance, contributions in series:
            base_kind = kind.removeprefix(f"{method}_")
            model = gt_name if kind == "ground_truth" else method
            description, derivation = derived_text(base_kind, model, eps)
            if cfg.dicom:
                write_series(
                    volume,
                    source,
                    dicom_root / name / kind,
                    base_kind,
                    description,
                    derivation + provenance,
                    eps=eps,
                    slice_indices=slice_indices,
                    deidentify=deid,
                    series_number=series_number,
                    overwrite=True,
                    contributions=contributions,
                    study=study,
                )
                series_number += 1
            if cfg.nifti:
                write_nifti(volume, grid, nifti_root / name / f"{kind}.nii.gz")
            kinds.append(kind)
        exported[name] = {"source_series": key, "slices": slice_indices, "kinds": kinds}
    _prune(dicom_root, nifti_root, exported)
    metrics = ExportResult(
        series=exported,
        dicom=str(dicom_root) if cfg.dicom else None,
        nifti=str(nifti_root) if cfg.nifti else None,
        deidentification=deid_note,
    )
    atomic_write_json(out / "metrics.json", {"export": metrics.model_dump(mode="json")})
    return {"series": len(exported), "deidentification": deid_note}
