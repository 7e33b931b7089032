"""Choice of the TV weight and of SIRT's iteration count on the training split, against the
source image the simulation started from, so the test split stays unseen and the reference
does not reward blur (the FBP ground truth is itself blurred at small n)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice
from ctrobust.physics.units import expected_noise_std

from .opnorm import operator_norm
from .sirt import sirt_weights
from .tv import tv_reconstruct


def noise_variance(
    y: torch.Tensor, pixel_mm: torch.Tensor, i0: float, mu_water_per_mm: float
) -> torch.Tensor:
    """Mean per-entry variance of each measured sinogram (B,), by the delta method of the
    Poisson model (``expected_noise_std``), read off the sinogram itself.

    It does not depend on the view count (every bin of every view gets ``i0`` photons) but on
    the patient: a larger or denser body lets fewer photons through. The MAP weight of
    1/2 ||A x - y||^2 + lam TV(x) is lam = sigma^2 beta, so lam = beta * noise_variance(y)
    follows the noise model per slice and at every view count.
    """
    std = torch.stack(
        [
            expected_noise_std(y[i : i + 1], i0, float(px), mu_water_per_mm)
            for i, px in enumerate(pixel_mm)
        ]
    )
    return std.pow(2).flatten(1).mean(dim=1)


def choose_tv_weight(
    op,
    y_train: torch.Tensor,
    x_train: torch.Tensor,
    candidates: Sequence[float],
    n_iter_max: int = 1000,
    tol: float = 1e-2,
    scale: torch.Tensor | None = None,
    **tv_kwargs,
) -> tuple[float, list[dict[str, object]]]:
    """Pick the TV weight with the best mean PSNR of ``tv_reconstruct(op, y_train, lam)``
    against ``x_train``; with ``scale`` (B,), slice i gets ``lam * scale[i]`` (e.g. its
    :func:`noise_variance`) and the candidates are weights per unit of scale.

    Every candidate runs in one batch (one weight per sample), so the operator makes one pass
    per iteration for all of them; each sample stops on its own gap, so the result is what it
    would be alone. Only training data enter. PSNR follows :mod:`ctrobust.metrics` (fixed
    2000 HU data range). Ties go to the smaller weight.

    Returns:
        ``(best_lam, table)`` with one row per candidate: ``lam``, ``psnr_mean``, ``psnr``
        (per training slice), ``iterations`` (most over the slices), ``gap`` (largest final
        relative gap) and ``converged`` (all slices).
    """
    if len(candidates) == 0:
        raise ValueError("candidates must contain at least one TV weight")
    tv_kwargs.setdefault("norm", operator_norm(op))
    lams = sorted(float(c) for c in candidates)
    b = y_train.shape[0]
    lam_b = torch.tensor(lams, dtype=y_train.dtype, device=y_train.device).repeat_interleave(b)
    if scale is not None:
        lam_b = lam_b * scale.to(lam_b).repeat(len(lams))
    y_all = y_train.repeat(len(lams), 1, 1, 1)
    with torch.no_grad():
        x, info = tv_reconstruct(op, y_all, lam_b, n_iter_max=n_iter_max, tol=tol, **tv_kwargs)
    psnr = psnr_per_slice(x, x_train.repeat(len(lams), 1, 1, 1))
    table: list[dict[str, object]] = []
    for k, lam in enumerate(lams):
        rows = slice(k * b, (k + 1) * b)
        table.append(
            {
                "lam": lam,
                "psnr_mean": float(psnr[rows].mean()),
                "psnr": [float(v) for v in psnr[rows]],
                "iterations": int(info.sample_iterations[rows].max()),
                "gap": float(info.gap[rows].max()),
                "converged": bool(info.converged[rows].all()),
                "data_range": DATA_RANGE_NOTE,
            }
        )
    best = max(table, key=lambda row: (row["psnr_mean"], -row["lam"]))
    return float(best["lam"]), table


def choose_sirt_iterations(
    op, y_train: torch.Tensor, x_train: torch.Tensor, n_iter_max: int, nonneg: bool = True
) -> tuple[int, list[float]]:
    """SIRT's semi-convergence point: the iteration count (1..n_iter_max) with the best mean
    PSNR against ``x_train``, and the mean PSNR after every iteration (one SIRT run).

    SIRT first fits the image, then the noise; past the best count it only gets worse, which
    is why its iteration count is its regularisation parameter.
    """
    r, c = sirt_weights(op, y_train)
    x = torch.zeros_like(x_train)
    curve: list[float] = []
    with torch.no_grad():
        for _ in range(n_iter_max):
            x = x + c * op.A_adjoint(r * (y_train - op.A(x)))
            x = x.clamp_min(0.0) if nonneg else x
            curve.append(float(psnr_per_slice(x, x_train).mean()))
    best = max(range(n_iter_max), key=lambda k: (curve[k], -k))
    return best + 1, curve
