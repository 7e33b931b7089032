"""Choice of the TV weight on the training split, so the test split stays unseen."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice

from .opnorm import operator_norm
from .tv import tv_reconstruct


def choose_tv_weight(
    op,
    y_train: torch.Tensor,
    x_train: torch.Tensor,
    candidates: Sequence[float],
    n_iter_max: int = 500,
    tol: float = 1e-4,
    **tv_kwargs,
) -> tuple[float, list[dict[str, object]]]:
    """Pick the TV weight with the best mean PSNR of ``tv_reconstruct(op, y_train, lam)``
    against ``x_train``.

    Only training data enter: call it with the training split's sinograms and ground truth
    and apply the returned weight to the test split. PSNR follows :mod:`ctrobust.metrics`
    (fixed 2000 HU data range). Ties go to the smaller weight.

    Returns:
        ``(best_lam, table)`` with one row per candidate: ``lam``, ``psnr_mean``,
        ``psnr`` (per training slice), ``iterations`` and ``converged`` (all slices).
    """
    if len(candidates) == 0:
        raise ValueError("candidates must contain at least one TV weight")
    tv_kwargs.setdefault("norm", operator_norm(op))
    table: list[dict[str, object]] = []
    for lam in sorted(float(c) for c in candidates):
        x, info = tv_reconstruct(op, y_train, lam, n_iter_max=n_iter_max, tol=tol, **tv_kwargs)
        psnr = psnr_per_slice(x, x_train)
        table.append(
            {
                "lam": lam,
                "psnr_mean": float(psnr.mean()),
                "psnr": [float(v) for v in psnr],
                "iterations": info.iterations,
                "converged": bool(info.converged.all()),
                "data_range": DATA_RANGE_NOTE,
            }
        )
    best = max(table, key=lambda row: (row["psnr_mean"], -row["lam"]))
    return float(best["lam"]), table
