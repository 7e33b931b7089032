"""More samples (Antun et al. 2020): does a method improve when it gets more views?

Each view count V gets its own operator; the sinogram is simulated from the same images
with that operator and every method reconstructs it. A stable classical method improves with
V; a network trained at 143 views may stagnate or degrade. PSNR and SSIM follow
:mod:`ctrobust.metrics` (fixed 2000 HU data range).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice, ssim_per_slice

if TYPE_CHECKING:
    from ctrobust.reconstructors import Reconstructor


DEFAULT_VIEWS = (50, 100, 143, 200, 300, 500, 1000)


def _default_factory(x: torch.Tensor) -> Callable[[int], object]:
    from ctrobust.physics import ParallelBeam2D

    return lambda v: ParallelBeam2D(x.shape[-1], v, device=x.device, dtype=x.dtype)


def more_views_sweep(
    reconstructors: Mapping[str, Reconstructor],
    x: torch.Tensor,
    views: Sequence[int] = DEFAULT_VIEWS,
    reference: torch.Tensor | None = None,
    operator_factory: Callable[[int], object] | None = None,
    measure: Callable[[object, torch.Tensor], torch.Tensor] | None = None,
    extra_reference: torch.Tensor | None = None,
) -> dict[str, object]:
    """Reconstruct ``x`` (B, 1, N, N) from V views for every V and method; score each.

    Args:
        reconstructors: name -> reconstructor; each is rebuilt for every view count with
            ``for_operator`` (a network on FBP then sees the FBP at that view count).
        x: images the sinograms are simulated from.
        views: view counts to sweep (sorted ascending).
        reference: what the reconstructions are scored against (``x`` when None), e.g. the
            1000-view FBP ground truth of the pipeline.
        operator_factory: V -> operator; ``ParallelBeam2D(N, V)`` on x's device/dtype when None.
        measure: (op, image) -> sinogram; noise-free ``op.A`` when None.
        extra_reference: a second reference (e.g. the source image beside the FBP ground
            truth); its scores go to each method's ``"extra"`` with the same keys.

    Returns:
        {"views": [...], "data_range": ..., "methods": {name: {"psnr_mean": [...per V],
        "ssim_mean": [...], "psnr": [[per slice] per V], "ssim": [[...]],
        "max_psnr_drop_db": largest PSNR loss from fewer to more views (0 if monotone)}}}.
    """
    reference = x if reference is None else reference
    factory = operator_factory or _default_factory(x)
    measure = measure or (lambda o, img: o.A(img))
    views = sorted(int(v) for v in views)
    refs = {"main": reference} | ({} if extra_reference is None else {"extra": extra_reference})
    table = {(ref, name): {"psnr": [], "ssim": []} for ref in refs for name in reconstructors}
    for v in views:
        op = factory(v)
        with torch.no_grad():
            y = measure(op, x)
            recs = {name: f.for_operator(op)(y) for name, f in reconstructors.items()}
        for (ref, name), rows in table.items():
            rows["psnr"].append(psnr_per_slice(recs[name], refs[ref]).tolist())
            rows["ssim"].append(ssim_per_slice(recs[name], refs[ref]).tolist())
        del op, y, recs  # this view count's operator goes before the next one is made
    scores = {key: _summary(rows) for key, rows in table.items()}
    methods = {name: scores["main", name] for name in reconstructors}
    if extra_reference is not None:
        for name in reconstructors:
            methods[name]["extra"] = scores["extra", name]
    return {"views": views, "data_range": DATA_RANGE_NOTE, "methods": methods}


def _summary(rows: dict[str, list]) -> dict[str, object]:
    psnr_mean = [sum(p) / len(p) for p in rows["psnr"]]
    return {
        "psnr_mean": psnr_mean,
        "ssim_mean": [sum(s) / len(s) for s in rows["ssim"]],
        "psnr": rows["psnr"],
        "ssim": rows["ssim"],
        "max_psnr_drop_db": _max_drop(psnr_mean),
    }


def _max_drop(values: Sequence[float]) -> float:
    """Largest values[i] - values[j] over i < j (views sorted as given), at least 0."""
    drop, best = 0.0, float("-inf")
    for v in values:
        best = max(best, v)
        drop = max(drop, best - v)
    return drop
